"""The base of PostgresStore's mixins: the shared pool, one transaction per write, reads,
cursor paging and the translation of driver errors. Each mixin (agents and blocks, MCP
servers, working memory, API keys, messages and runs, conversations today; search, ... as
they are ported) adds one role of the Store protocol. Helpers one mixin needs from another
are declared at the end as stubs (as in SqliteRows): PgRows comes last in PostgresStore's
method order, so the real methods replace them.

Driver: psycopg 3 with psycopg_pool (see `_postgres.py` for why).
"""

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import psycopg
import psycopg_pool

from kelpie.errors import InvalidInput
from kelpie.schemas import Block, Message, Passage, RunEvent
from kelpie.storage._commits import BlockChange, StepCommit, ThreadUpdate
from kelpie.storage._errors import StorageConflict, StorageUnavailable
from kelpie.storage._pagination import Cursor, page_clause
from kelpie.storage._queries import Page

PAGE_COLUMNS: Final = frozenset({"created_at", "updated_at", "last_message_at"})
PAGE_TABLES: Final = frozenset(
    {
        "agents",
        "blocks",
        "tools",
        "conversations",
        "messages",
        "runs",
        "steps",
        "archives",
        "passages",
    }
)

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
POOL_OPEN_TIMEOUT_S: Final = 10.0


def searchable(text: str | None) -> str | None:
    """A NUL-free copy for a column SQL searches (PostgreSQL text cannot hold NUL; the row's
    JSON keeps the original)."""
    return None if text is None else text.replace("\x00", "")


def qmarks(text: str) -> str:
    """`page_clause`'s SQLite placeholders as psycopg's (it only emits `?` for values)."""
    return text.replace("?", "%s")


class PgRows:
    def __init__(self, pool: psycopg_pool.AsyncConnectionPool[Connection]) -> None:
        self._pool = pool
        self._pool_open = False

    async def _open_pool(self) -> None:
        """Opens the pool in the running event loop (its first use), waiting for its first
        connections; an unreachable server is StorageUnavailable (a 503 in a request)."""
        try:
            await self._pool.open(wait=True, timeout=POOL_OPEN_TIMEOUT_S)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            raise StorageUnavailable(f"cannot connect to the database: {error}") from error
        self._pool_open = True

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Connection]:
        """One write transaction on a pooled connection; driver errors become storage
        errors, and any exception rolls it back."""
        if not self._pool_open:
            await self._open_pool()
        try:
            async with self._pool.connection() as db, db.transaction():
                yield db
        except psycopg.errors.IntegrityError as error:
            raise StorageConflict(f"write rejected by a uniqueness rule: {error}") from error
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            raise StorageUnavailable(f"database write failed: {error}") from error

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Connection]:
        """A pooled connection for a few reads in a row (autocommit: each its own snapshot,
        as SQLite's reads outside a transaction)."""
        if not self._pool_open:
            await self._open_pool()
        try:
            async with self._pool.connection() as db:
                yield db
        except (psycopg.Error, psycopg_pool.PoolTimeout) as error:
            raise StorageUnavailable(f"database read failed: {error}") from error

    async def _read(self, statement: str, params: Sequence[object] = ()) -> list[Any]:
        async with self._reading() as db:
            cursor = await db.execute(statement, params)
            return await cursor.fetchall()

    @staticmethod
    async def _cursor_at(
        db: Connection, table: str, item_id: str | None, column: str
    ) -> Cursor | None:
        if item_id is None:
            return None
        cursor = await db.execute(f"SELECT {column} FROM {table} WHERE id = %s", (item_id,))
        row = await cursor.fetchone()
        if row is None:
            raise InvalidInput(f"Cursor '{item_id}' does not match any stored item to page from")
        return Cursor(created_at=row[0], id=item_id)

    async def _paged(
        self,
        db: Connection,
        table: str,
        alias: str,
        page: Page,
        where: list[str],
        params: list[object],
        column: str = "created_at",
    ) -> tuple[str, list[object], bool]:
        """WHERE ... ORDER BY ... LIMIT for one page in the strict (column, id) order, its
        parameters, and whether the rows come back reversed (as SQLite's `_paged`)."""
        assert column in PAGE_COLUMNS, f"not an indexed page column: {column}"
        assert table in PAGE_TABLES, f"not a paged table: {table}"
        after = await self._cursor_at(db, table, page.after, column)
        before = await self._cursor_at(db, table, page.before, column)
        clause = page_clause(alias, page, after=after, before=before, column=column)
        conditions = [*where, *(qmarks(condition) for condition in clause.where)]
        sql_where = " AND ".join(conditions) or "TRUE"
        statement = f"WHERE {sql_where} ORDER BY {clause.order} LIMIT %s"
        return statement, [*params, *clause.params, page.limit], clause.reverse

    async def _page_rows(
        self,
        columns: str,
        table: str,
        alias: str,
        page: Page,
        where: list[str],
        params: list[object],
        column: str = "created_at",
    ) -> list[Any]:
        """One page of `table` (under `alias`), as rows of `columns`, in the page's order."""
        async with self._reading() as db:
            tail, all_params, reverse = await self._paged(
                db, table, alias, page, where, params, column=column
            )
            cursor = await db.execute(f"SELECT {columns} FROM {table} {alias} {tail}", all_params)
            rows = await cursor.fetchall()
        return rows[::-1] if reverse else rows

    # AgentRows (for McpRows) ------------------------------------------------------------

    @staticmethod
    async def _set_agent_tools(
        db: Connection, agent_id: str, tool_ids: Sequence[str], at_us: int
    ) -> None:
        raise NotImplementedError

    @staticmethod
    async def _touch_agent(db: Connection, agent_id: str, at_us: int) -> None:
        raise NotImplementedError

    # AgentRows (for RunRows and ThreadRows) -----------------------------------------------

    async def _insert_messages(self, db: Connection, messages: Sequence[Message]) -> None:
        raise NotImplementedError

    async def _write_block_row(self, db: Connection, block: Block, *, insert: bool) -> None:
        raise NotImplementedError

    async def _change_block(self, db: Connection, block: Block, change: BlockChange) -> None:
        raise NotImplementedError

    @staticmethod
    async def _read_context(
        db: Connection, agent_id: str, conversation_id: str | None
    ) -> tuple[str, ...]:
        raise NotImplementedError

    @staticmethod
    async def _take_positions(
        db: Connection, agent_id: str, conversation_id: str | None, count: int
    ) -> int | None:
        raise NotImplementedError

    @staticmethod
    async def _insert_context(
        db: Connection, agent_id: str, conversation_id: str | None, start: int, ids: Sequence[str]
    ) -> None:
        raise NotImplementedError

    async def _replace_context(
        self, db: Connection, agent_id: str, conversation_id: str | None, ids: Sequence[str]
    ) -> None:
        raise NotImplementedError

    # WorkingMemoryRows (for the step commit) ----------------------------------------------

    async def _write_step_working_memory(self, db: Connection, commit: StepCommit) -> None:
        raise NotImplementedError

    # ThreadRows (for RunRows) -------------------------------------------------------------

    async def _insert_run_events(self, db: Connection, events: Sequence[RunEvent]) -> None:
        raise NotImplementedError

    async def _write_thread(self, db: Connection, thread: ThreadUpdate) -> None:
        raise NotImplementedError

    # ArchiveRows (for the step commit) ----------------------------------------------------

    async def _insert_passage(self, db: Connection, passage: Passage) -> None:
        raise NotImplementedError

"""SQLite store: the embedded default. One connection, WAL, one transaction per write.

Calls run inline on the event loop: each is a handful of indexed statements (tens of
microseconds), cheaper than a thread hop, and the simulator can run them (it has no
threads). Every write method is synchronous from BEGIN to COMMIT, so two writes never
interleave on the connection.
"""

import collections
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final, final

from kelpie.errors import InvalidInput
from kelpie.schemas import (
    AgentConfig,
    AgentState,
    Block,
    Message,
    Tool,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.storage import _migrations
from kelpie.storage._checkpointer import WalCheckpointer
from kelpie.storage._commits import AgentsImport, BlockChange, NewAgent
from kelpie.storage._errors import StorageConflict, StorageUnavailable
from kelpie.storage._pagination import Cursor, page_clause
from kelpie.storage._queries import AgentQuery, BlockQuery, Page, ToolQuery
from kelpie.storage._sql import like_pattern, placeholders
from kelpie.storage._sqlite_archives import ArchiveRows
from kelpie.storage._sqlite_history import HistoryRows
from kelpie.storage._sqlite_keys import ApiKeyRows
from kelpie.storage._sqlite_mcp import McpRows
from kelpie.storage._sqlite_memory import WorkingMemoryRows
from kelpie.storage._sqlite_runs import RunRows
from kelpie.storage._sqlite_search import SearchRows
from kelpie.storage._sqlite_threads import ThreadRows
from kelpie.storage._vector_index import VectorIndex

BUSY_TIMEOUT_MS: Final = 5_000
# SQLite's page cache (default 2 MiB): enough for the hot index pages of a large store.
PAGE_CACHE_KIB: Final = 64 * 1024
_PAGE_COLUMNS: Final = frozenset({"created_at", "updated_at", "last_message_at"})
# What an agent row's JSON holds: its configuration, never its relationships (nor its
# in-context message ids: rows of context_messages).
_AGENT_CONFIG_FIELDS: Final = set(AgentConfig.model_fields) - {"message_ids"}


def _agent_json(agent: AgentConfig) -> str:
    return agent.model_dump_json(include=_AGENT_CONFIG_FIELDS)


def _agent_state(data: str) -> AgentState:
    """A stored agent, parsed straight into the response shape (relationships empty): one
    pass through pydantic's parser instead of a parse and a copy per read."""
    return AgentState.model_validate_json(data)


@final
class SqliteStore(
    SearchRows,
    ArchiveRows,
    McpRows,
    RunRows,
    ThreadRows,
    HistoryRows,
    WorkingMemoryRows,
    ApiKeyRows,
):
    def __init__(
        self, connection: sqlite3.Connection, checkpointer: WalCheckpointer | None = None
    ) -> None:
        self._db = connection
        self._checkpointer = checkpointer
        self._message_cache = collections.OrderedDict()
        self._message_cache_bytes = 0
        self._vector_index = VectorIndex(self)

    @classmethod
    def open(
        cls, path: Path, *, synchronous: str = "NORMAL", background_checkpoints: bool = False
    ) -> "SqliteStore":
        """Opens (creating if needed) the database at `path` and applies migrations.

        `synchronous=NORMAL` under WAL survives a killed process without losing a
        committed transaction; `FULL` also survives power loss, at an fsync per commit.
        `background_checkpoints` (production) checkpoints the WAL from a thread instead of
        inside whichever commit crosses the threshold.
        """
        assert synchronous in ("OFF", "NORMAL", "FULL"), "unknown synchronous mode"
        path.parent.mkdir(parents=True, exist_ok=True)
        _migrations.apply(path)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
            if background_checkpoints:
                db.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot open database {path}: {error}") from error
        checkpointer = WalCheckpointer(path) if background_checkpoints else None
        if checkpointer is not None:
            checkpointer.start()
        return cls(db, checkpointer)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; driver errors become storage errors."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.IntegrityError as error:
            raise StorageConflict(f"write rejected by a uniqueness rule: {error}") from error
        except sqlite3.Error as error:
            raise StorageUnavailable(f"database write failed: {error}") from error

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StorageUnavailable(f"database read failed: {error}") from error

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for a few reads in a row; driver errors become storage errors."""
        try:
            yield self._db
        except sqlite3.Error as error:
            raise StorageUnavailable(f"database read failed: {error}") from error

    def _cursor(self, table: str, item_id: str | None, column: str) -> Cursor | None:
        if item_id is None:
            return None
        rows = self._read(f"SELECT {column} FROM {table} WHERE id = ?", (item_id,))
        if not rows:
            raise InvalidInput(f"Cursor '{item_id}' does not match any stored item to page from")
        return Cursor(created_at=rows[0][0], id=item_id)

    def _paged(
        self,
        table: str,
        alias: str,
        page: Page,
        where: list[str],
        params: list[object],
        column: str = "created_at",
    ) -> tuple[str, list[object], bool]:
        assert column in _PAGE_COLUMNS, f"not an indexed page column: {column}"
        after = self._cursor(table, page.after, column)
        before = self._cursor(table, page.before, column)
        clause = page_clause(alias, page, after=after, before=before, column=column)
        sql_where = " AND ".join([*where, *clause.where]) or "1"
        sql = f"WHERE {sql_where} ORDER BY {clause.order} LIMIT ?"
        return sql, [*params, *clause.params, page.limit], clause.reverse

    # Agents ---------------------------------------------------------------------------

    async def insert_agent(
        self,
        agent: AgentConfig,
        *,
        new_blocks: Sequence[Block],
        block_ids: Sequence[str],
        tool_ids: Sequence[str],
        tags: Sequence[str],
        messages: Sequence[Message] = (),
    ) -> None:
        new = NewAgent(
            agent=agent,
            new_blocks=tuple(new_blocks),
            block_ids=tuple(block_ids),
            tool_ids=tuple(tool_ids),
            tags=tuple(tags),
            messages=tuple(messages),
        )
        with self._tx() as db:
            self._insert_agent_rows(db, new)

    async def import_agents(self, batch: AgentsImport) -> None:
        """Tools first (agents attach them), then shared blocks, then each agent."""
        with self._tx() as db:
            for tool in batch.tools_created:
                self._insert_tool_row(db, tool)
            for tool in batch.tools_replaced:
                if not self._update_tool_row(db, tool):
                    raise StorageConflict(f"Tool {tool.id} was deleted during the import")
            for block in batch.blocks_created:
                self._write_block_row(db, block, insert=True)
            for new in batch.agents:
                self._insert_agent_rows(db, new)

    def _insert_agent_rows(self, db: sqlite3.Connection, new: NewAgent) -> None:
        agent = new.agent
        created = us_from_datetime(agent.created_at)
        for block in new.new_blocks:
            self._write_block_row(db, block, insert=True)
        db.execute(
            "INSERT INTO agents (id, name, agent_type, hidden, created_at, updated_at, data)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                agent.id,
                agent.name,
                agent.agent_type,
                int(bool(agent.hidden)),
                created,
                us_from_datetime(agent.updated_at),
                _agent_json(agent),
            ),
        )
        self._set_agent_blocks(db, agent.id, new.block_ids, created)
        self._set_agent_tools(db, agent.id, new.tool_ids, created)
        self._set_agent_tags(db, agent.id, new.tags)
        self._insert_messages(db, new.messages)
        self._replace_context(db, agent.id, None, agent.message_ids)

    def _with_message_ids(self, agents: list[AgentState]) -> list[AgentState]:
        with self._reading() as db:
            for agent in agents:
                agent.message_ids = list(self._read_context(db, agent.id, None))
        return agents

    async def get_agent(self, agent_id: str, *, message_ids: bool = True) -> AgentState | None:
        """The agent; with `message_ids` False, its in-context list is left empty (a turn
        takes it from its activation's cache, see `context_since`)."""
        rows = self._read("SELECT data FROM agents WHERE id = ?", (agent_id,))
        if not rows:
            return None
        agent = _agent_state(rows[0][0])
        return self._with_message_ids([agent])[0] if message_ids else agent

    async def update_agent(
        self,
        agent: AgentConfig,
        *,
        block_ids: Sequence[str] | None = None,
        tool_ids: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        updated = us_from_datetime(agent.updated_at)
        with self._tx() as db:
            self._write_agent_row(db, agent)
            if block_ids is not None:
                db.execute("DELETE FROM agent_blocks WHERE agent_id = ?", (agent.id,))
                self._set_agent_blocks(db, agent.id, block_ids, updated)
            if tool_ids is not None:
                db.execute("DELETE FROM agent_tools WHERE agent_id = ?", (agent.id,))
                self._set_agent_tools(db, agent.id, tool_ids, updated)
            if tags is not None:
                db.execute("DELETE FROM agent_tags WHERE agent_id = ?", (agent.id,))
                self._set_agent_tags(db, agent.id, tags)

    def _write_agent_row(self, db: sqlite3.Connection, agent: AgentConfig) -> None:
        cursor = db.execute(
            "UPDATE agents SET name = ?, agent_type = ?, hidden = ?, updated_at = ?, data = ?"
            " WHERE id = ?",
            (
                agent.name,
                agent.agent_type,
                int(bool(agent.hidden)),
                us_from_datetime(agent.updated_at),
                _agent_json(agent),
                agent.id,
            ),
        )
        assert cursor.rowcount == 1, "update of an agent that is not stored"
        if self._read_context(db, agent.id, None) != tuple(agent.message_ids):
            self._replace_context(db, agent.id, None, agent.message_ids)

    @staticmethod
    def _set_agent_blocks(
        db: sqlite3.Connection, agent_id: str, block_ids: Sequence[str], at_us: int
    ) -> None:
        # The label is copied from the block so (agent, label) uniqueness is enforced here.
        for block_id in block_ids:
            db.execute(
                "INSERT INTO agent_blocks (agent_id, block_id, label, attached_at)"
                " SELECT ?, id, label, ? FROM blocks WHERE id = ?",
                (agent_id, at_us, block_id),
            )

    @staticmethod
    def _set_agent_tools(
        db: sqlite3.Connection, agent_id: str, tool_ids: Sequence[str], at_us: int
    ) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO agent_tools (agent_id, tool_id, attached_at) VALUES (?, ?, ?)",
            [(agent_id, tool_id, at_us) for tool_id in tool_ids],
        )

    @staticmethod
    def _set_agent_tags(db: sqlite3.Connection, agent_id: str, tags: Sequence[str]) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO agent_tags (agent_id, tag) VALUES (?, ?)",
            [(agent_id, tag) for tag in tags],
        )

    async def delete_agent(self, agent_id: str) -> bool:
        # Its messages go by cascade: none may be served from the cache after.
        self._clear_message_cache()
        with self._tx() as db:
            return db.execute("DELETE FROM agents WHERE id = ?", (agent_id,)).rowcount == 1

    async def list_agents(self, query: AgentQuery, page: Page) -> list[AgentState]:
        where: list[str] = []
        params: list[object] = []
        if not query.include_hidden:
            where.append("a.hidden = 0")
        if query.name is not None:
            where.append("a.name = ?")
            params.append(query.name)
        if query.query_text:
            where.append("a.name LIKE ? ESCAPE '\\'")
            params.append(like_pattern(query.query_text))
        if query.tags:
            tags = sorted(set(query.tags))
            having = f" GROUP BY agent_id HAVING COUNT(*) = {len(tags)}"
            where.append(
                "a.id IN (SELECT agent_id FROM agent_tags WHERE tag IN"
                f" ({placeholders(tags)}){having if query.match_all_tags else ''})"
            )
            params.extend(tags)
        sql, all_params, reverse = self._paged(
            "agents", "a", page, where, params, column=query.order_by
        )
        rows = self._read(f"SELECT a.data FROM agents a {sql}", all_params)
        agents = self._with_message_ids([_agent_state(row[0]) for row in rows])
        return agents[::-1] if reverse else agents

    async def count_agents(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM agents")[0][0])

    async def tags_of_agents(self, agent_ids: Sequence[str]) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {agent_id: [] for agent_id in agent_ids}
        if agent_ids:
            rows = self._read(
                f"SELECT agent_id, tag FROM agent_tags WHERE agent_id IN"
                f" ({placeholders(agent_ids)}) ORDER BY agent_id, tag",
                list(agent_ids),
            )
            for agent_id, tag in rows:
                result[agent_id].append(tag)
        return result

    async def blocks_of_agents(self, agent_ids: Sequence[str]) -> dict[str, list[Block]]:
        result: dict[str, list[Block]] = {agent_id: [] for agent_id in agent_ids}
        if agent_ids:
            rows = self._read(
                "SELECT ab.agent_id, b.data FROM agent_blocks ab JOIN blocks b"
                f" ON b.id = ab.block_id WHERE ab.agent_id IN ({placeholders(agent_ids)})"
                " ORDER BY ab.agent_id, b.created_at, b.id",
                list(agent_ids),
            )
            for agent_id, data in rows:
                result[agent_id].append(Block.model_validate_json(data))
        return result

    async def tools_of_agents(self, agent_ids: Sequence[str]) -> dict[str, list[Tool]]:
        result: dict[str, list[Tool]] = {agent_id: [] for agent_id in agent_ids}
        if agent_ids:
            rows = self._read(
                "SELECT at.agent_id, t.data FROM agent_tools at JOIN tools t"
                f" ON t.id = at.tool_id WHERE at.agent_id IN ({placeholders(agent_ids)})"
                " ORDER BY at.agent_id, t.created_at, t.id",
                list(agent_ids),
            )
            for agent_id, data in rows:
                result[agent_id].append(Tool.model_validate_json(data))
        return result

    async def list_agent_blocks(self, agent_id: str, page: Page) -> list[Block]:
        sql, params, reverse = self._paged("blocks", "b", page, ["ab.agent_id = ?"], [agent_id])
        rows = self._read(
            f"SELECT b.data FROM agent_blocks ab JOIN blocks b ON b.id = ab.block_id {sql}",
            params,
        )
        blocks = [Block.model_validate_json(row[0]) for row in rows]
        return blocks[::-1] if reverse else blocks

    async def get_agent_block(self, agent_id: str, label: str) -> Block | None:
        rows = self._read(
            "SELECT b.data FROM agent_blocks ab JOIN blocks b ON b.id = ab.block_id"
            " WHERE ab.agent_id = ? AND ab.label = ?",
            (agent_id, label),
        )
        return Block.model_validate_json(rows[0][0]) if rows else None

    async def attach_block(self, agent_id: str, block: Block, attached_at_us: int) -> None:
        """Attaching an attached block is a no-op; a label the agent already has under
        another block breaks the (agent, label) rule and raises StorageConflict."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO agent_blocks (agent_id, block_id, label, attached_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (agent_id, block_id) DO NOTHING",
                (agent_id, block.id, block.label, attached_at_us),
            )
            self._touch_agent(db, agent_id, attached_at_us)

    async def detach_block(self, agent_id: str, block_id: str, updated_at_us: int) -> bool:
        with self._tx() as db:
            deleted = db.execute(
                "DELETE FROM agent_blocks WHERE agent_id = ? AND block_id = ?",
                (agent_id, block_id),
            ).rowcount
            self._touch_agent(db, agent_id, updated_at_us)
            return deleted == 1

    async def list_agent_tools(self, agent_id: str, page: Page) -> list[Tool]:
        sql, params, reverse = self._paged("tools", "t", page, ["at.agent_id = ?"], [agent_id])
        rows = self._read(
            f"SELECT t.data FROM agent_tools at JOIN tools t ON t.id = at.tool_id {sql}", params
        )
        tools = [Tool.model_validate_json(row[0]) for row in rows]
        return tools[::-1] if reverse else tools

    async def attach_tool(self, agent_id: str, tool_id: str, attached_at_us: int) -> None:
        with self._tx() as db:
            self._set_agent_tools(db, agent_id, [tool_id], attached_at_us)
            self._touch_agent(db, agent_id, attached_at_us)

    async def detach_tool(self, agent_id: str, tool_id: str, updated_at_us: int) -> bool:
        with self._tx() as db:
            deleted = db.execute(
                "DELETE FROM agent_tools WHERE agent_id = ? AND tool_id = ?", (agent_id, tool_id)
            ).rowcount
            self._touch_agent(db, agent_id, updated_at_us)
            return deleted == 1

    @staticmethod
    def _touch_agent(db: sqlite3.Connection, agent_id: str, at_us: int) -> None:
        """Moves updated_at forward (never back) in both the column and the stored JSON."""
        db.execute(
            "UPDATE agents SET updated_at = ?, data = json_set(data, '$.updated_at', ?)"
            " WHERE id = ? AND updated_at < ?",
            (at_us, datetime_from_us(at_us).isoformat(), agent_id, at_us),
        )

    async def list_tags(
        self, *, after: str | None, limit: int, query_text: str | None
    ) -> list[str]:
        where, params = ["1"], list[object]()
        if after is not None:
            where.append("tag > ?")
            params.append(after)
        if query_text:
            where.append("tag LIKE ? ESCAPE '\\'")
            params.append(like_pattern(query_text))
        rows = self._read(
            f"SELECT DISTINCT tag FROM agent_tags WHERE {' AND '.join(where)} ORDER BY tag LIMIT ?",
            [*params, limit],
        )
        return [row[0] for row in rows]

    # Blocks ---------------------------------------------------------------------------

    def _write_block_row(self, db: sqlite3.Connection, block: Block, *, insert: bool) -> None:
        assert block.created_at is not None, "block stored without created_at"
        assert block.updated_at is not None, "block stored without updated_at"
        values = (
            block.label,
            int(block.is_template),
            us_from_datetime(block.created_at),
            us_from_datetime(block.updated_at),
            block.model_dump_json(),
            block.id,
        )
        if insert:
            db.execute(
                "INSERT INTO blocks (label, is_template, created_at, updated_at, data, id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
        else:
            cursor = db.execute(
                "UPDATE blocks SET label = ?, is_template = ?, created_at = ?, updated_at = ?,"
                " data = ? WHERE id = ?",
                values,
            )
            assert cursor.rowcount == 1, "update of a block that is not stored"
            db.execute(
                "UPDATE agent_blocks SET label = ? WHERE block_id = ?", (block.label, block.id)
            )
            db.execute("DELETE FROM block_tags WHERE block_id = ?", (block.id,))
        db.executemany(
            "INSERT OR IGNORE INTO block_tags (block_id, tag) VALUES (?, ?)",
            [(block.id, tag) for tag in block.tags],
        )

    async def insert_block(self, block: Block) -> None:
        with self._tx() as db:
            self._write_block_row(db, block, insert=True)

    async def get_block(self, block_id: str) -> Block | None:
        rows = self._read("SELECT data FROM blocks WHERE id = ?", (block_id,))
        return Block.model_validate_json(rows[0][0]) if rows else None

    async def get_blocks(self, block_ids: Sequence[str]) -> list[Block]:
        if not block_ids:
            return []
        rows = self._read(
            f"SELECT data FROM blocks WHERE id IN ({placeholders(block_ids)})", list(block_ids)
        )
        return [Block.model_validate_json(row[0]) for row in rows]

    async def update_block(self, block: Block, *, change: BlockChange) -> None:
        with self._tx() as db:
            self._change_block(db, block, change)

    async def delete_block(self, block_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM blocks WHERE id = ?", (block_id,)).rowcount == 1

    async def list_blocks(self, query: BlockQuery, page: Page) -> list[Block]:
        where: list[str] = []
        params: list[object] = []
        if query.label is not None:
            where.append("b.label = ?")
            params.append(query.label)
        for column, text in (
            ("b.label", query.label_search),
            ("json_extract(b.data, '$.value')", query.value_search),
            ("json_extract(b.data, '$.description')", query.description_search),
        ):
            if text:
                where.append(f"{column} LIKE ? ESCAPE '\\'")
                params.append(like_pattern(text))
        if query.templates_only:
            where.append("b.is_template = 1")
        if query.tags:
            tags = sorted(set(query.tags))
            having = f" GROUP BY block_id HAVING COUNT(*) = {len(tags)}"
            where.append(
                "b.id IN (SELECT block_id FROM block_tags WHERE tag IN"
                f" ({placeholders(tags)}){having if query.match_all_tags else ''})"
            )
            params.extend(tags)
        sql, all_params, reverse = self._paged("blocks", "b", page, where, params)
        rows = self._read(f"SELECT b.data FROM blocks b {sql}", all_params)
        blocks = [Block.model_validate_json(row[0]) for row in rows]
        return blocks[::-1] if reverse else blocks

    async def list_block_agents(self, block_id: str, page: Page) -> list[AgentState]:
        sql, params, reverse = self._paged("agents", "a", page, ["ab.block_id = ?"], [block_id])
        rows = self._read(
            f"SELECT a.data FROM agent_blocks ab JOIN agents a ON a.id = ab.agent_id {sql}", params
        )
        agents = self._with_message_ids([_agent_state(row[0]) for row in rows])
        return agents[::-1] if reverse else agents

    # Tools ----------------------------------------------------------------------------

    @staticmethod
    def _tool_values(tool: Tool) -> tuple[object, ...]:
        assert tool.created_at is not None, "tool stored without created_at"
        assert tool.updated_at is not None, "tool stored without updated_at"
        return (
            tool.name,
            tool.tool_type,
            us_from_datetime(tool.created_at),
            us_from_datetime(tool.updated_at),
            tool.model_dump_json(),
            tool.id,
        )

    def _insert_tool_row(self, db: sqlite3.Connection, tool: Tool) -> None:
        db.execute(
            "INSERT INTO tools (name, tool_type, created_at, updated_at, data, id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            self._tool_values(tool),
        )

    def _update_tool_row(self, db: sqlite3.Connection, tool: Tool) -> bool:
        cursor = db.execute(
            "UPDATE tools SET name = ?, tool_type = ?, created_at = ?, updated_at = ?,"
            " data = ? WHERE id = ?",
            self._tool_values(tool),
        )
        return cursor.rowcount == 1

    async def insert_tool(self, tool: Tool) -> None:
        with self._tx() as db:
            self._insert_tool_row(db, tool)

    async def get_tool(self, tool_id: str) -> Tool | None:
        rows = self._read("SELECT data FROM tools WHERE id = ?", (tool_id,))
        return Tool.model_validate_json(rows[0][0]) if rows else None

    async def get_tools(self, tool_ids: Sequence[str]) -> list[Tool]:
        if not tool_ids:
            return []
        rows = self._read(
            f"SELECT data FROM tools WHERE id IN ({placeholders(tool_ids)})", list(tool_ids)
        )
        return [Tool.model_validate_json(row[0]) for row in rows]

    async def get_tools_by_name(self, names: Sequence[str]) -> list[Tool]:
        if not names:
            return []
        rows = self._read(
            f"SELECT data FROM tools WHERE name IN ({placeholders(names)})", list(names)
        )
        return [Tool.model_validate_json(row[0]) for row in rows]

    async def update_tool(self, tool: Tool) -> None:
        with self._tx() as db:
            updated = self._update_tool_row(db, tool)
        assert updated, "update of a tool that is not stored"

    async def upsert_tools(self, tools: Sequence[Tool]) -> list[Tool]:
        """Inserts or replaces by name, in name order (a deterministic write order), keeping
        the id and created_at of a tool already stored under the name."""
        stored: list[Tool] = []
        with self._tx() as db:
            for tool in sorted(tools, key=lambda t: t.name):
                row = db.execute(
                    "SELECT id, data FROM tools WHERE name = ?", (tool.name,)
                ).fetchone()
                if row is None:
                    self._insert_tool_row(db, tool)
                    stored.append(tool)
                    continue
                existing = Tool.model_validate_json(row[1])
                merged = tool.model_copy(
                    update={"id": existing.id, "created_at": existing.created_at}
                )
                self._update_tool_row(db, merged)
                stored.append(merged)
        return stored

    async def delete_tool(self, tool_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM tools WHERE id = ?", (tool_id,)).rowcount == 1

    async def list_tools(self, query: ToolQuery, page: Page) -> list[Tool]:
        where: list[str] = []
        params: list[object] = []
        for column, values, negate in (
            ("t.name", query.names, False),
            ("t.id", query.tool_ids, False),
            ("t.tool_type", query.tool_types, False),
            ("t.tool_type", query.exclude_tool_types, True),
        ):
            if values:
                where.append(f"{column} {'NOT ' if negate else ''}IN ({placeholders(values)})")
                params.extend(values)
        if query.search:
            where.append("t.name LIKE ? ESCAPE '\\'")
            params.append(like_pattern(query.search))
        sql, all_params, reverse = self._paged("tools", "t", page, where, params)
        rows = self._read(f"SELECT t.data FROM tools t {sql}", all_params)
        tools = [Tool.model_validate_json(row[0]) for row in rows]
        return tools[::-1] if reverse else tools

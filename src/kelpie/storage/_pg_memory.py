"""PostgreSQL rows for working memory: the `_roles.WorkingMemory` role, with the semantics
of the SQLite store's methods of the same names (`_sqlite_memory.py`).

Reads take the caller's `now_us` (the store reads no clock) and skip expired rows; expired
rows are deleted by the next write to the same agent's working memory (a step commit's
too). Writers run concurrently here, so a set locks the agent's row first: two sets for one
agent cannot both pass the key limit with one slot left.
"""

from typing import Final

from kelpie.errors import NotFound
from kelpie.schemas import (
    WORKING_MEMORY_KEYS_MAX,
    WorkingMemoryEntry,
    datetime_from_us,
    us_from_datetime,
    working_memory_value_json,
)
from kelpie.storage._commits import StepCommit
from kelpie.storage._errors import WorkingMemoryFull
from kelpie.storage._pagination import key_page_clause
from kelpie.storage._pg_rows import Connection, PgRows, qmarks
from kelpie.storage._queries import Page
from kelpie.storage._row_shapes import ENTRY_COLUMNS, PREFIX_END, entry_from_row

_LIVE: Final = "agent_id = %s AND (expires_at IS NULL OR expires_at > %s)"


def _prefixed(agent_id: str, prefix: str, now_us: int) -> tuple[str, list[object]]:
    assert PREFIX_END not in prefix, "prefix holds a character no key may hold"
    if not prefix:
        return _LIVE, [agent_id, now_us]
    return f"{_LIVE} AND key >= %s AND key < %s", [agent_id, now_us, prefix, prefix + PREFIX_END]


async def _purge_expired(db: Connection, agent_id: str, now_us: int) -> None:
    await db.execute(
        "DELETE FROM working_memory WHERE agent_id = %s AND expires_at <= %s", (agent_id, now_us)
    )


async def _upsert(db: Connection, agent_id: str, entry: WorkingMemoryEntry) -> int:
    """Sets the key, keeping created_at of a live row it replaces; returns created_at."""
    expires_at = None if entry.expires_at is None else us_from_datetime(entry.expires_at)
    cursor = await db.execute(
        "INSERT INTO working_memory (agent_id, key, value, expires_at, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (agent_id, key) DO UPDATE SET"
        " value = EXCLUDED.value, expires_at = EXCLUDED.expires_at,"
        " updated_at = EXCLUDED.updated_at RETURNING created_at",
        (
            agent_id,
            entry.key,
            working_memory_value_json(entry.value),
            expires_at,
            us_from_datetime(entry.created_at),
            us_from_datetime(entry.updated_at),
        ),
    )
    row = await cursor.fetchone()
    assert row is not None, "an upsert returns its row"
    created_at: int = row[0]
    return created_at


class WorkingMemoryRows(PgRows):
    async def get_working_memory(
        self, agent_id: str, key: str, now_us: int
    ) -> WorkingMemoryEntry | None:
        rows = await self._read(
            f"SELECT {ENTRY_COLUMNS} FROM working_memory WHERE {_LIVE} AND key = %s",
            (agent_id, now_us, key),
        )
        return entry_from_row(rows[0]) if rows else None

    async def list_working_memory(
        self, agent_id: str, prefix: str, page: Page, now_us: int
    ) -> list[WorkingMemoryEntry]:
        """Live keys in key order; `after`/`before` are keys (stored or not)."""
        where, params = _prefixed(agent_id, prefix, now_us)
        clause = key_page_clause("key", page, after=page.after, before=page.before)
        conditions = [where, *(qmarks(condition) for condition in clause.where)]
        rows = await self._read(
            f"SELECT {ENTRY_COLUMNS} FROM working_memory WHERE {' AND '.join(conditions)}"
            f" ORDER BY {clause.order} LIMIT %s",
            [*params, *clause.params, page.limit],
        )
        entries = [entry_from_row(row) for row in rows]
        return entries[::-1] if clause.reverse else entries

    async def working_memory_keys(self, agent_id: str, prefix: str, now_us: int) -> list[str]:
        """Every live key starting with `prefix`, in key order, without the values."""
        where, params = _prefixed(agent_id, prefix, now_us)
        rows = await self._read(
            f"SELECT key FROM working_memory WHERE {where} ORDER BY key", params
        )
        return [row[0] for row in rows]

    async def set_working_memory(
        self, agent_id: str, entry: WorkingMemoryEntry
    ) -> WorkingMemoryEntry:
        """Sets one key: NotFound for an unknown agent, WorkingMemoryFull when a new key
        would pass WORKING_MEMORY_KEYS_MAX live keys. Returns the stored entry (with the
        created_at of a live key it replaced)."""
        now_us = us_from_datetime(entry.updated_at)
        async with self._tx() as db:
            # Locks the agent against other working-memory writers (not against FK checks).
            agent = await db.execute(
                "SELECT 1 FROM agents WHERE id = %s FOR NO KEY UPDATE", (agent_id,)
            )
            if await agent.fetchone() is None:
                raise NotFound(f"Agent {agent_id} not found")
            await _purge_expired(db, agent_id, now_us)
            counted = await db.execute(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE key = %s)"
                " FROM working_memory WHERE agent_id = %s",
                (entry.key, agent_id),
            )
            count_row = await counted.fetchone()
            assert count_row is not None
            count, exists = count_row
            if not exists and count >= WORKING_MEMORY_KEYS_MAX:
                raise WorkingMemoryFull(
                    f"Agent {agent_id} already has {count} working-memory keys, the most"
                    f" it may hold ({WORKING_MEMORY_KEYS_MAX}); delete some first"
                )
            created_at = await _upsert(db, agent_id, entry)
        return entry.model_copy(update={"created_at": datetime_from_us(created_at)})

    async def delete_working_memory(self, agent_id: str, key: str, now_us: int) -> bool:
        """Deletes a live key; False when there was none (expired keys count as none)."""
        async with self._tx() as db:
            await _purge_expired(db, agent_id, now_us)
            cursor = await db.execute(
                "DELETE FROM working_memory WHERE agent_id = %s AND key = %s", (agent_id, key)
            )
            return cursor.rowcount == 1

    async def _write_step_working_memory(self, db: Connection, commit: StepCommit) -> None:
        """The step's sets and deletes, in the step commit's transaction, which holds the
        agent's row: a concurrent `set_working_memory` counts the keys after the step's (the
        step's own sets were checked against the limit by its tool calls)."""
        if not commit.working_memory_set and not commit.working_memory_deleted:
            return
        assert commit.step is not None, "working memory written outside a step"
        agent_id = commit.thread.agent_id
        await _purge_expired(db, agent_id, us_from_datetime(commit.step.created_at))
        for entry in commit.working_memory_set:
            await _upsert(db, agent_id, entry)
        if commit.working_memory_deleted:
            await db.execute(
                "DELETE FROM working_memory WHERE agent_id = %s AND key = ANY(%s)",
                (agent_id, list(commit.working_memory_deleted)),
            )

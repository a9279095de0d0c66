"""SQLite rows for working memory, a mixin of SqliteStore.

Reads take the caller's `now_us` (the store reads no clock) and skip expired rows, so a key
is invisible the moment it expires. Expired rows are deleted lazily, by the next write to
the same agent's working memory, in that write's transaction.
"""

import sqlite3
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
from kelpie.storage._queries import Page
from kelpie.storage._row_shapes import ENTRY_COLUMNS, PREFIX_END, entry_from_row
from kelpie.storage._sqlite_rows import SqliteRows

_LIVE: Final = "agent_id = ? AND (expires_at IS NULL OR expires_at > ?)"


def _purge_expired(db: sqlite3.Connection, agent_id: str, now_us: int) -> None:
    db.execute(
        "DELETE FROM working_memory WHERE agent_id = ? AND expires_at <= ?", (agent_id, now_us)
    )


def _upsert(db: sqlite3.Connection, agent_id: str, entry: WorkingMemoryEntry) -> int:
    """Sets the key, keeping created_at of a live row it replaces; returns created_at."""
    expires_at = None if entry.expires_at is None else us_from_datetime(entry.expires_at)
    row = db.execute(
        "INSERT INTO working_memory (agent_id, key, value, expires_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, key) DO UPDATE SET"
        " value = excluded.value, expires_at = excluded.expires_at,"
        " updated_at = excluded.updated_at RETURNING created_at",
        (
            agent_id,
            entry.key,
            working_memory_value_json(entry.value),
            expires_at,
            us_from_datetime(entry.created_at),
            us_from_datetime(entry.updated_at),
        ),
    ).fetchone()
    created_at: int = row[0]
    return created_at


class WorkingMemoryRows(SqliteRows):
    async def get_working_memory(
        self, agent_id: str, key: str, now_us: int
    ) -> WorkingMemoryEntry | None:
        rows = self._read(
            f"SELECT {ENTRY_COLUMNS} FROM working_memory WHERE {_LIVE} AND key = ?",
            (agent_id, now_us, key),
        )
        return entry_from_row(rows[0]) if rows else None

    async def list_working_memory(
        self, agent_id: str, prefix: str, page: Page, now_us: int
    ) -> list[WorkingMemoryEntry]:
        """Live keys in key order; `after`/`before` are keys (stored or not)."""
        where, params = self._prefixed(agent_id, prefix, now_us)
        clause = key_page_clause("key", page, after=page.after, before=page.before)
        rows = self._read(
            f"SELECT {ENTRY_COLUMNS} FROM working_memory"
            f" WHERE {' AND '.join([where, *clause.where])}"
            f" ORDER BY {clause.order} LIMIT ?",
            [*params, *clause.params, page.limit],
        )
        entries = [entry_from_row(row) for row in rows]
        return entries[::-1] if clause.reverse else entries

    async def working_memory_keys(self, agent_id: str, prefix: str, now_us: int) -> list[str]:
        """Every live key starting with `prefix`, in key order, without the values."""
        where, params = self._prefixed(agent_id, prefix, now_us)
        rows = self._read(f"SELECT key FROM working_memory WHERE {where} ORDER BY key", params)
        return [row[0] for row in rows]

    @staticmethod
    def _prefixed(agent_id: str, prefix: str, now_us: int) -> tuple[str, list[object]]:
        assert PREFIX_END not in prefix, "prefix holds a character no key may hold"
        if not prefix:
            return _LIVE, [agent_id, now_us]
        return f"{_LIVE} AND key >= ? AND key < ?", [agent_id, now_us, prefix, prefix + PREFIX_END]

    async def set_working_memory(
        self, agent_id: str, entry: WorkingMemoryEntry
    ) -> WorkingMemoryEntry:
        """Sets one key (REST): NotFound for an unknown agent, WorkingMemoryFull when a new
        key would pass WORKING_MEMORY_KEYS_MAX live keys. Returns the stored entry."""
        now_us = us_from_datetime(entry.updated_at)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)).fetchone() is None:
                raise NotFound(f"Agent {agent_id} not found")
            _purge_expired(db, agent_id, now_us)
            exists = db.execute(
                "SELECT 1 FROM working_memory WHERE agent_id = ? AND key = ?", (agent_id, entry.key)
            ).fetchone()
            if exists is None:
                count = db.execute(
                    "SELECT COUNT(*) FROM working_memory WHERE agent_id = ?", (agent_id,)
                ).fetchone()[0]
                if count >= WORKING_MEMORY_KEYS_MAX:
                    raise WorkingMemoryFull(
                        f"Agent {agent_id} already has {count} working-memory keys, the most"
                        f" it may hold ({WORKING_MEMORY_KEYS_MAX}); delete some first"
                    )
            created_at = _upsert(db, agent_id, entry)
        return entry.model_copy(update={"created_at": datetime_from_us(created_at)})

    async def delete_working_memory(self, agent_id: str, key: str, now_us: int) -> bool:
        """Deletes a live key; False when there was none (expired keys count as none)."""
        with self._tx() as db:
            _purge_expired(db, agent_id, now_us)
            deleted = db.execute(
                "DELETE FROM working_memory WHERE agent_id = ? AND key = ?", (agent_id, key)
            ).rowcount
            return deleted == 1

    def _write_step_working_memory(self, db: sqlite3.Connection, commit: StepCommit) -> None:
        if not commit.working_memory_set and not commit.working_memory_deleted:
            return
        assert commit.step is not None, "working memory written outside a step"
        agent_id = commit.thread.agent_id
        _purge_expired(db, agent_id, us_from_datetime(commit.step.created_at))
        for entry in commit.working_memory_set:
            _upsert(db, agent_id, entry)
        db.executemany(
            "DELETE FROM working_memory WHERE agent_id = ? AND key = ?",
            [(agent_id, key) for key in commit.working_memory_deleted],
        )

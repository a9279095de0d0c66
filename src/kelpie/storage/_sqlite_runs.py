"""SQLite rows for messages, runs and steps, and the step commit. A mixin of SqliteStore,
split out so each module keeps one concern."""

import collections
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from kelpie.schemas import Message, Run, RunEvent, Step, us_from_datetime
from kelpie.storage._commits import BlockChange, StepCommit
from kelpie.storage._queries import MessageQuery, Page, RunQuery
from kelpie.storage._row_shapes import (
    MESSAGE_COLUMNS,
    RUN_COLUMNS,
    STEP_COLUMNS,
    message_values,
    run_values,
    step_values,
)
from kelpie.storage._sql import SQL_VARIABLES_MAX, placeholders
from kelpie.storage._sqlite_rows import SqliteRows

_ACTIVE_STATUSES: Final = ("created", "running")
# Parsed messages kept in memory (a few hundred bytes to a few KB each), bounded by count
# and by the size of their stored JSON (a parsed message takes a few times that). Turns
# keep their thread's messages in the agent's activation; this cache serves the rest.
MESSAGE_CACHE_MAX: Final = 20_000
MESSAGE_CACHE_BYTES_MAX: Final = 8 * 1024 * 1024


class RunRows(SqliteRows):
    """Needs the host store's transaction, read and paging helpers.

    Keeps a bounded cache of parsed messages: a turn reads the agent's whole in-context
    history, and parsing it again every turn would make each turn slower than the last.
    Stored messages never change, except the system message, which is rewritten in place
    and so never cached. The cache fills only from reads (committed state); every write of
    a message evicts it.
    """

    # id -> (message, size of its stored JSON)
    _message_cache: "collections.OrderedDict[str, tuple[Message, int]]"
    _message_cache_bytes: int

    def _clear_message_cache(self) -> None:
        """Empties the cache (its byte count too, or later fills would be evicted at once)."""
        self._message_cache.clear()
        self._message_cache_bytes = 0

    def _uncache_message(self, message_id: str) -> None:
        dropped = self._message_cache.pop(message_id, None)
        if dropped is not None:
            self._message_cache_bytes -= dropped[1]

    # Messages --------------------------------------------------------------------------

    def _insert_messages(self, db: sqlite3.Connection, messages: Sequence[Message]) -> None:
        for message in messages:
            self._uncache_message(message.id)
        db.executemany(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            # The system message is rewritten in place when the prompt is recompiled.
            " ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            [message_values(m) for m in messages],
        )
        self._index_messages(db, messages)

    async def insert_messages(self, messages: Sequence[Message]) -> None:
        with self._tx() as db:
            self._insert_messages(db, messages)

    async def get_messages(self, message_ids: Sequence[str]) -> list[Message]:
        """The messages with these ids, in the order asked for (missing ones skipped)."""
        if not message_ids:
            return []
        cache = self._message_cache
        found: dict[str, Message] = {}
        missing = []
        for message_id in message_ids:
            cached = cache.get(message_id)
            if cached is None:
                missing.append(message_id)
            else:
                found[message_id] = cached[0]
                cache.move_to_end(message_id)
        for chunk in _chunks(missing):
            rows = self._read(
                f"SELECT data FROM messages WHERE id IN ({','.join('?' * len(chunk))})", chunk
            )
            for (data,) in rows:
                message = Message.model_validate_json(data)
                found[message.id] = message
                if message.role != "system":
                    self._uncache_message(message.id)
                    cache[message.id] = (message, len(data))
                    self._message_cache_bytes += len(data)
        while cache and (
            len(cache) > MESSAGE_CACHE_MAX or self._message_cache_bytes > MESSAGE_CACHE_BYTES_MAX
        ):
            self._message_cache_bytes -= cache.popitem(last=False)[1][1]
        return [found[i] for i in message_ids if i in found]

    async def list_messages(self, query: MessageQuery, page: Page) -> list[Message]:
        where = ["m.agent_id = ?"]
        params: list[object] = [query.agent_id]
        if not query.all_threads:
            thread = "m.conversation_id IS ?"
            if query.shared_ids:
                shared = query.shared_ids[:SQL_VARIABLES_MAX]
                thread = f"({thread} OR m.id IN ({placeholders(shared)}))"
                params += [query.conversation_id, *shared]
            else:
                params.append(query.conversation_id)
            where.append(thread)
        sql, params, reverse = self._paged("messages", "m", page, where, params)
        rows = self._read(f"SELECT m.data FROM messages m {sql}", params)
        messages = [Message.model_validate_json(row[0]) for row in rows]
        return messages[::-1] if reverse else messages

    async def list_all_messages(self, conversation_id: str | None, page: Page) -> list[Message]:
        """Every agent's messages (`GET /v1/messages/`), optionally of one conversation."""
        where, params = [], list[object]()
        if conversation_id is not None:
            where.append("m.conversation_id = ?")
            params.append(conversation_id)
        sql, all_params, reverse = self._paged("messages", "m", page, where, params)
        rows = self._read(f"SELECT m.data FROM messages m {sql}", all_params)
        messages = [Message.model_validate_json(row[0]) for row in rows]
        return messages[::-1] if reverse else messages

    async def list_run_messages(self, run_id: str, page: Page) -> list[Message]:
        sql, params, reverse = self._paged("messages", "m", page, ["m.run_id = ?"], [run_id])
        rows = self._read(f"SELECT m.data FROM messages m {sql}", params)
        messages = [Message.model_validate_json(row[0]) for row in rows]
        return messages[::-1] if reverse else messages

    async def count_messages(self, agent_id: str) -> int:
        rows = self._read("SELECT COUNT(*) FROM messages WHERE agent_id = ?", (agent_id,))
        return int(rows[0][0])

    async def delete_agent_messages(self, agent_id: str, keep_ids: Sequence[str]) -> int:
        """Deletes the agent's messages except `keep_ids` (reset); returns how many."""
        self._clear_message_cache()
        with self._tx() as db:
            keep = list(keep_ids)
            clause = f" AND id NOT IN ({','.join('?' * len(keep))})" if keep else ""
            return db.execute(
                f"DELETE FROM messages WHERE agent_id = ?{clause}", [agent_id, *keep]
            ).rowcount

    # Runs and steps --------------------------------------------------------------------

    @staticmethod
    def _write_run(db: sqlite3.Connection, run: Run) -> None:
        db.execute(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
            " completed_at = excluded.completed_at, data = excluded.data",
            run_values(run),
        )

    async def save_run(self, run: Run, events: Sequence[RunEvent] = ()) -> None:
        """The run's state, and the stream events that go with it (a run that ends outside
        a step, e.g. failed at start-up, also ends its stored stream)."""
        with self._tx() as db:
            self._write_run(db, run)
            self._insert_run_events(db, events)

    async def get_run(self, run_id: str) -> Run | None:
        rows = self._read("SELECT data FROM runs WHERE id = ?", (run_id,))
        return Run.model_validate_json(rows[0][0]) if rows else None

    async def list_runs(self, query: RunQuery, page: Page) -> list[Run]:
        where: list[str] = []
        params: list[object] = []
        if query.agent_ids:
            where.append(f"r.agent_id IN ({','.join('?' * len(query.agent_ids))})")
            params.extend(query.agent_ids)
        if query.conversation_id is not None:
            where.append("r.conversation_id IS ?")
            params.append(query.conversation_id or None)
        if query.statuses:
            where.append(f"r.status IN ({','.join('?' * len(query.statuses))})")
            params.extend(query.statuses)
        if query.background is not None:
            where.append("r.background = ?")
            params.append(int(query.background))
        sql, all_params, reverse = self._paged("runs", "r", page, where, params)
        rows = self._read(f"SELECT r.data FROM runs r {sql}", all_params)
        runs = [Run.model_validate_json(row[0]) for row in rows]
        return runs[::-1] if reverse else runs

    async def active_runs(self) -> list[Run]:
        """Runs not finished: after a restart, each is resumed or failed."""
        rows = self._read(
            "SELECT data FROM runs WHERE status IN (?, ?) ORDER BY created_at, id", _ACTIVE_STATUSES
        )
        return [Run.model_validate_json(row[0]) for row in rows]

    async def prune_run_streams(self, created_before_us: int, runs_max: int) -> int:
        """Deletes the stored streams of up to `runs_max` background runs created before
        `created_before_us` that have ended (never a running run's), marking each run so
        readers are told its stream expired; returns how many runs were pruned."""
        with self._tx() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM runs WHERE background = 1 AND stream_pruned = 0"
                    f" AND created_at < ? AND status NOT IN ({placeholders(_ACTIVE_STATUSES)})"
                    " ORDER BY created_at LIMIT ?",
                    (created_before_us, *_ACTIVE_STATUSES, runs_max),
                )
            ]
            if ids:
                marks = placeholders(ids)
                db.execute(f"DELETE FROM run_events WHERE run_id IN ({marks})", ids)
                db.execute(f"UPDATE runs SET stream_pruned = 1 WHERE id IN ({marks})", ids)
        return len(ids)

    async def run_stream_pruned(self, run_id: str) -> bool:
        rows = self._read("SELECT stream_pruned FROM runs WHERE id = ?", (run_id,))
        return bool(rows and rows[0][0])

    async def list_steps(self, run_id: str | None, agent_id: str | None, page: Page) -> list[Step]:
        where: list[str] = []
        params: list[object] = []
        if run_id is not None:
            where.append("s.run_id = ?")
            params.append(run_id)
        if agent_id is not None:
            where.append("s.agent_id = ?")
            params.append(agent_id)
        sql, all_params, reverse = self._paged("steps", "s", page, where, params)
        rows = self._read(f"SELECT s.data FROM steps s {sql}", all_params)
        steps = [Step.model_validate_json(row[0]) for row in rows]
        return steps[::-1] if reverse else steps

    async def get_step(self, step_id: str) -> Step | None:
        rows = self._read("SELECT data FROM steps WHERE id = ?", (step_id,))
        return Step.model_validate_json(rows[0][0]) if rows else None

    async def commit_step(self, commit: StepCommit) -> None:
        with self._tx() as db:
            if commit.run is not None:
                self._write_run(db, commit.run)
            if commit.step is not None:
                db.execute(
                    f"INSERT INTO steps ({STEP_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                    step_values(commit.step),
                )
            self._insert_messages(db, commit.messages)
            for changed in commit.blocks_changed:
                change = BlockChange(
                    source="tool",
                    agent_id=commit.thread.agent_id,
                    tool_call_id=changed.tool_call_id,
                    step_id=None if commit.step is None else commit.step.id,
                )
                self._change_block(db, changed.block, change)
            for block in commit.blocks_created:
                self._write_block_row(db, block, insert=True)
                db.execute(
                    "INSERT INTO agent_blocks (agent_id, block_id, label, attached_at)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        commit.thread.agent_id,
                        block.id,
                        block.label,
                        us_from_datetime(commit.thread.updated_at),
                    ),
                )
            for passage in commit.passages:
                self._insert_passage(db, passage)
            self._write_step_working_memory(db, commit)
            for block_id in commit.blocks_detached:
                db.execute(
                    "DELETE FROM agent_blocks WHERE agent_id = ? AND block_id = ?",
                    (commit.thread.agent_id, block_id),
                )
            self._write_thread(db, commit.thread)
            self._insert_run_events(db, commit.events)


def _chunks(values: Sequence[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])

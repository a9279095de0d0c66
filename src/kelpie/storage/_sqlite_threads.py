"""SQLite rows for message threads: conversations, the in-context list of a thread (the
agent's own, or a conversation's) as a step commit moves it, and the event log of
background runs. A mixin of SqliteStore, split out so each module keeps one concern."""

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from kelpie.schemas import (
    Conversation,
    Message,
    Run,
    RunEvent,
    us_from_datetime,
)
from kelpie.storage._commits import ContextIds, ThreadUpdate
from kelpie.storage._queries import ConversationQuery, Page
from kelpie.storage._row_shapes import (
    conversation_json,
    conversation_last_us,
    event_from_row,
    merged_conversation,
    run_outcome,
)
from kelpie.storage._sql import like_pattern
from kelpie.storage._sqlite_rows import SqliteRows

# A thread's key in context_messages: '' for the agent's own thread.
OWN_THREAD: Final = ""
# json_set's path and value for a row's JSON updated_at: the new time (µs, then ISO) only
# when it is later than the row's column, else the JSON's own.
_FORWARD_UPDATED_AT: Final = (
    "'$.updated_at', CASE WHEN updated_at < ? THEN ? ELSE json_extract(data, '$.updated_at') END"
)


def thread_key(conversation_id: str | None) -> str:
    return OWN_THREAD if conversation_id is None else conversation_id


class ThreadRows(SqliteRows):
    # Conversations ---------------------------------------------------------------------

    @staticmethod
    def _write_conversation(db: sqlite3.Connection, conversation: Conversation) -> None:
        db.execute(
            "INSERT INTO conversations (id, agent_id, archived, hidden, created_at, updated_at,"
            " last_message_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                conversation.id,
                conversation.agent_id,
                int(conversation.archived),
                int(conversation.hidden),
                us_from_datetime(conversation.created_at),
                us_from_datetime(conversation.updated_at),
                conversation_last_us(conversation),
                conversation_json(conversation),
            ),
        )
        ThreadRows._replace_context(
            db, conversation.agent_id, conversation.id, conversation.in_context_message_ids
        )

    async def get_conversation(
        self, conversation_id: str, *, message_ids: bool = True
    ) -> Conversation | None:
        """The conversation; with `message_ids` False, its in-context list is left empty
        (a turn takes it from its activation's cache, see `context_since`)."""
        rows = self._read(
            "SELECT agent_id, data FROM conversations WHERE id = ?", (conversation_id,)
        )
        if not rows:
            return None
        conversation = Conversation.model_validate_json(rows[0][1])
        if message_ids:
            with self._reading() as db:
                ids = self._read_context(db, rows[0][0], conversation_id)
            conversation.in_context_message_ids = list(ids)
        return conversation

    async def insert_conversation(
        self, conversation: Conversation, messages: Sequence[Message]
    ) -> None:
        """A new conversation with its first messages (its system message)."""
        with self._tx() as db:
            self._write_conversation(db, conversation)
            self._insert_messages(db, messages)

    async def update_conversation(
        self, conversation_id: str, changes: Mapping[str, Any], updated_at_us: int
    ) -> Conversation | None:
        """Writes only the fields named in `changes` (read and written in one transaction),
        so a turn's in-context list, moved concurrently, is never overwritten."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT data FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchall()
            if not rows:
                return None
            stored = Conversation.model_validate_json(rows[0][0])
            merged = merged_conversation(stored, changes, updated_at_us)
            db.execute(
                "UPDATE conversations SET archived = ?, updated_at = ?, last_message_at = ?,"
                " data = ? WHERE id = ?",
                (
                    int(merged.archived),
                    us_from_datetime(merged.updated_at),
                    conversation_last_us(merged),
                    conversation_json(merged),
                    conversation_id,
                ),
            )
            ids = self._read_context(db, merged.agent_id, conversation_id)
            merged.in_context_message_ids = list(ids)
            return merged

    async def delete_conversation(self, conversation_id: str) -> bool:
        """The conversation goes; its messages stay in the agent's recall memory."""
        with self._tx() as db:
            db.execute("DELETE FROM context_messages WHERE thread = ?", (conversation_id,))
            deleted = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            return deleted.rowcount == 1

    async def list_conversations(self, query: ConversationQuery, page: Page) -> list[Conversation]:
        where: list[str] = []
        params: list[object] = []
        if query.agent_id is not None:
            where.append("c.agent_id = ?")
            params.append(query.agent_id)
        if query.archived is not None:
            where.append("c.archived = ?")
            params.append(int(query.archived))
        if not query.include_hidden:
            where.append("c.hidden = 0")
        if query.summary_search:
            where.append("json_extract(c.data, '$.summary') LIKE ? ESCAPE '\\'")
            params.append(like_pattern(query.summary_search))
        sql, all_params, reverse = self._paged(
            "conversations", "c", page, where, params, column=query.order_by
        )
        rows = self._read(f"SELECT c.data FROM conversations c {sql}", all_params)
        found = [Conversation.model_validate_json(row[0]) for row in rows]
        with self._reading() as db:
            for conversation in found:
                ids = self._read_context(db, conversation.agent_id, conversation.id)
                conversation.in_context_message_ids = list(ids)
        return found[::-1] if reverse else found

    # Threads ---------------------------------------------------------------------------

    # In-context lists ------------------------------------------------------------------

    @staticmethod
    def _read_context(
        db: sqlite3.Connection, agent_id: str, conversation_id: str | None
    ) -> tuple[str, ...]:
        rows = db.execute(
            "SELECT message_id FROM context_messages WHERE agent_id = ? AND thread = ?"
            " ORDER BY position",
            (agent_id, thread_key(conversation_id)),
        ).fetchall()
        return tuple(row[0] for row in rows)

    @staticmethod
    def _context_next(
        db: sqlite3.Connection, agent_id: str, conversation_id: str | None
    ) -> int | None:
        if conversation_id is None:
            rows = db.execute("SELECT context_next FROM agents WHERE id = ?", (agent_id,))
        else:
            rows = db.execute(
                "SELECT context_next FROM conversations WHERE id = ? AND agent_id = ?",
                (conversation_id, agent_id),
            )
        found = rows.fetchone()
        return None if found is None else int(found[0])

    @staticmethod
    def _set_context_next(
        db: sqlite3.Connection, agent_id: str, conversation_id: str | None, head: int
    ) -> None:
        if conversation_id is None:
            db.execute("UPDATE agents SET context_next = ? WHERE id = ?", (head, agent_id))
        else:
            db.execute(
                "UPDATE conversations SET context_next = ? WHERE id = ?", (head, conversation_id)
            )

    @staticmethod
    def _insert_context(
        db: sqlite3.Connection,
        agent_id: str,
        conversation_id: str | None,
        start: int,
        ids: Iterable[str],
    ) -> None:
        key = thread_key(conversation_id)
        db.executemany(
            "INSERT INTO context_messages (agent_id, thread, position, message_id)"
            " VALUES (?, ?, ?, ?)",
            [(agent_id, key, start + i, message_id) for i, message_id in enumerate(ids)],
        )

    @staticmethod
    def _replace_context(
        db: sqlite3.Connection, agent_id: str, conversation_id: str | None, ids: Sequence[str]
    ) -> None:
        """The thread's whole list, written after the old positions (the head moves)."""
        head = ThreadRows._context_next(db, agent_id, conversation_id)
        assert head is not None, "in-context list of a thread that is not stored"
        db.execute(
            "DELETE FROM context_messages WHERE agent_id = ? AND thread = ?",
            (agent_id, thread_key(conversation_id)),
        )
        ThreadRows._insert_context(db, agent_id, conversation_id, head, ids)
        ThreadRows._set_context_next(db, agent_id, conversation_id, head + max(1, len(ids)))

    @staticmethod
    def _append_context(
        db: sqlite3.Connection, agent_id: str, conversation_id: str | None, ids: Sequence[str]
    ) -> None:
        head = ThreadRows._context_next(db, agent_id, conversation_id)
        assert head is not None, "in-context list of a thread that is not stored"
        ThreadRows._insert_context(db, agent_id, conversation_id, head, ids)
        ThreadRows._set_context_next(db, agent_id, conversation_id, head + len(ids))

    async def context_since(
        self, agent_id: str, conversation_id: str | None, head: int | None
    ) -> ContextIds | None:
        """The thread's in-context ids, or None when its head is still `head` (a cached
        copy is current). A thread that is not stored has no ids (head -1)."""
        with self._reading() as db:
            stored = self._context_next(db, agent_id, conversation_id)
            if stored is None:
                return ContextIds(head=-1, ids=())
            if stored == head:
                return None
            return ContextIds(head=stored, ids=self._read_context(db, agent_id, conversation_id))

    @staticmethod
    def _write_thread(db: sqlite3.Connection, thread: ThreadUpdate) -> None:
        """Moves a thread's in-context list and the agent's activity fields; touches
        nothing else on either row. updated_at moves forward only, in the column and in
        the JSON reads return (SET sees the row's old column)."""
        at_us = us_from_datetime(thread.updated_at)
        at = thread.updated_at.isoformat()
        agent_paths: list[object] = []
        if thread.finished_run is not None:
            stop_reason, completed_at, duration_ms = run_outcome(thread.finished_run)
            completed = None if completed_at is None else completed_at.isoformat()
            agent_paths += [
                "$.last_stop_reason",
                stop_reason,
                "$.last_run_completion",
                completed,
                "$.last_run_duration_ms",
                duration_ms,
            ]
        setters = "".join(", ?, ?" for _ in agent_paths[::2])
        cursor = db.execute(
            "UPDATE agents SET updated_at = MAX(updated_at, ?),"
            f" data = json_set(data, {_FORWARD_UPDATED_AT}{setters}) WHERE id = ?",
            [at_us, at_us, at, *agent_paths, thread.agent_id],
        )
        assert cursor.rowcount == 1, "step commit for an agent that is not stored"
        if thread.conversation_id is not None:
            cursor = db.execute(
                "UPDATE conversations SET updated_at = MAX(updated_at, ?),"
                f" data = json_set(data, {_FORWARD_UPDATED_AT}) WHERE id = ?",
                (at_us, at_us, at, thread.conversation_id),
            )
            assert cursor.rowcount == 1, "step commit for a conversation that is not stored"
        if thread.message_ids is not None:
            ThreadRows._replace_context(
                db, thread.agent_id, thread.conversation_id, thread.message_ids
            )
        elif thread.appended:
            ThreadRows._append_context(db, thread.agent_id, thread.conversation_id, thread.appended)

    # Run events -------------------------------------------------------------------------

    @staticmethod
    def _insert_run_events(db: sqlite3.Connection, events: Sequence[RunEvent]) -> None:
        db.executemany(
            "INSERT INTO run_events (run_id, seq_id, event, data) VALUES (?, ?, ?, ?)",
            [(e.run_id, e.seq_id, e.event, e.data) for e in events],
        )

    async def append_run_events(self, events: Sequence[RunEvent]) -> None:
        if events:
            with self._tx() as db:
                self._insert_run_events(db, events)

    async def list_run_events(self, run_id: str, after_seq: int, limit: int) -> list[RunEvent]:
        rows = self._read(
            "SELECT seq_id, event, data FROM run_events WHERE run_id = ? AND seq_id > ?"
            " ORDER BY seq_id LIMIT ?",
            (run_id, after_seq, limit),
        )
        return [event_from_row(run_id, row) for row in rows]

    async def last_run_seq(self, run_id: str) -> int:
        rows = self._read("SELECT MAX(seq_id) FROM run_events WHERE run_id = ?", (run_id,))
        return int(rows[0][0] or 0)

    async def find_run_by_request_token(self, agent_id: str, token: str) -> Run | None:
        rows = self._read(
            "SELECT data FROM runs WHERE agent_id = ? AND request_token = ?"
            " ORDER BY created_at DESC, id DESC LIMIT 1",
            (agent_id, token),
        )
        return Run.model_validate_json(rows[0][0]) if rows else None

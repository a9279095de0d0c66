"""PostgreSQL rows for message threads: conversations, the in-context list of a thread (the
agent's own, or a conversation's) as a step commit moves it, and the event log of
background runs: the "conversations" role of the Store (`_roles.Conversations`) and the
thread update of the step commit, with the semantics of the SQLite store's methods of the
same names (`_sqlite_threads.py`; the conformance suite,
tests/storage/test_conformance_conversations.py, runs the same assertions on both).

Differences from SQLite that are not visible through the protocol:
- What a step moves without rewriting a row's JSON is a column laid over the JSON when the
  row is read (migration 0001): a conversation's updated_at, an agent's updated_at and
  last_run_* / last_stop_reason. A conversation's summary has a NUL-free column of its own
  for summary search.
- Writers run concurrently: a PATCH locks the conversation's row from its read to its
  write, and a thread's positions are taken by an UPDATE of its row (`_take_positions`),
  so two writers of one thread take turns.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final

from kelpie.schemas import Conversation, Message, Run, RunEvent, datetime_from_us, us_from_datetime
from kelpie.storage._commits import ThreadUpdate
from kelpie.storage._pg_rows import Connection, PgRows, searchable
from kelpie.storage._queries import ConversationQuery, Page
from kelpie.storage._row_shapes import (
    conversation_json,
    conversation_last_us,
    event_from_row,
    merged_conversation,
    optional_us,
    run_outcome,
)
from kelpie.storage._sql import like_pattern

# The conversation's in-context ids as one array column of its row (one round trip, one
# snapshot with the row).
_CONTEXT: Final = (
    "(SELECT coalesce(array_agg(cm.message_id ORDER BY cm.position), '{}')"
    " FROM context_messages cm WHERE cm.agent_id = c.agent_id AND cm.thread = c.id)"
)
# The row's JSON and the column laid over it; then the ids (or NULL, not asked for).
_FIELDS: Final = "c.data, c.updated_at"
_COLUMNS: Final = f"{_FIELDS}, {_CONTEXT}"


def _conversation(row: Sequence[Any]) -> Conversation:
    data, updated_at, message_ids = row
    conversation = Conversation.model_validate_json(data)
    conversation.updated_at = datetime_from_us(updated_at)
    if message_ids is not None:
        conversation.in_context_message_ids = list(message_ids)
    return conversation


class ThreadRows(PgRows):
    # Conversations ---------------------------------------------------------------------

    async def insert_conversation(
        self, conversation: Conversation, messages: Sequence[Message]
    ) -> None:
        """A new conversation with its first messages (its system message)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO conversations (id, agent_id, archived, hidden, created_at,"
                " updated_at, last_message_at, summary, data)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    conversation.id,
                    conversation.agent_id,
                    conversation.archived,
                    conversation.hidden,
                    us_from_datetime(conversation.created_at),
                    us_from_datetime(conversation.updated_at),
                    conversation_last_us(conversation),
                    searchable(conversation.summary),
                    conversation_json(conversation),
                ),
            )
            await self._replace_context(
                db, conversation.agent_id, conversation.id, conversation.in_context_message_ids
            )
            await self._insert_messages(db, messages)

    async def get_conversation(
        self, conversation_id: str, *, message_ids: bool = True
    ) -> Conversation | None:
        """The conversation; with `message_ids` False, its in-context list is left empty
        (a turn takes it from its activation's cache, see `context_since`)."""
        columns = _COLUMNS if message_ids else f"{_FIELDS}, NULL"
        rows = await self._read(
            f"SELECT {columns} FROM conversations c WHERE c.id = %s", (conversation_id,)
        )
        return _conversation(rows[0]) if rows else None

    async def update_conversation(
        self, conversation_id: str, changes: Mapping[str, Any], updated_at_us: int
    ) -> Conversation | None:
        """Writes only the fields named in `changes`, the row locked from its read to its
        write, so neither a concurrent PATCH nor a turn's in-context list is overwritten."""
        async with self._tx() as db:
            cursor = await db.execute(
                f"SELECT {_FIELDS}, NULL FROM conversations c WHERE c.id = %s FOR NO KEY UPDATE",
                (conversation_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            merged = merged_conversation(_conversation(row), changes, updated_at_us)
            await db.execute(
                "UPDATE conversations SET archived = %s, updated_at = %s, last_message_at = %s,"
                " summary = %s, data = %s WHERE id = %s",
                (
                    merged.archived,
                    us_from_datetime(merged.updated_at),
                    conversation_last_us(merged),
                    searchable(merged.summary),
                    conversation_json(merged),
                    conversation_id,
                ),
            )
            ids = await self._read_context(db, merged.agent_id, conversation_id)
        merged.in_context_message_ids = list(ids)
        return merged

    async def delete_conversation(self, conversation_id: str) -> bool:
        """The conversation goes; its messages stay in the agent's recall memory."""
        async with self._tx() as db:
            cursor = await db.execute(
                "DELETE FROM conversations WHERE id = %s RETURNING agent_id", (conversation_id,)
            )
            row = await cursor.fetchone()
            if row is None:
                return False
            await db.execute(
                "DELETE FROM context_messages WHERE agent_id = %s AND thread = %s",
                (row[0], conversation_id),
            )
            return True

    async def list_conversations(self, query: ConversationQuery, page: Page) -> list[Conversation]:
        where: list[str] = []
        params: list[object] = []
        if query.agent_id is not None:
            where.append("c.agent_id = %s")
            params.append(query.agent_id)
        if query.archived is not None:
            where.append("c.archived = %s")
            params.append(query.archived)
        if not query.include_hidden:
            where.append("NOT c.hidden")
        if query.summary_search:
            where.append("c.summary ILIKE %s ESCAPE '\\'")
            params.append(like_pattern(query.summary_search))
        rows = await self._page_rows(
            _COLUMNS, "conversations", "c", page, where, params, column=query.order_by
        )
        return [_conversation(row) for row in rows]

    # The thread a step commit moves ----------------------------------------------------

    async def _write_thread(self, db: Connection, thread: ThreadUpdate) -> None:
        """Moves a thread's in-context list and the agent's (and conversation's) activity
        columns; touches nothing else on either row, and no JSON."""
        at_us = us_from_datetime(thread.updated_at)
        if thread.finished_run is None:
            cursor = await db.execute(
                "UPDATE agents SET updated_at = GREATEST(updated_at, %s) WHERE id = %s",
                (at_us, thread.agent_id),
            )
        else:
            stop_reason, completed_at, duration_ms = run_outcome(thread.finished_run)
            cursor = await db.execute(
                "UPDATE agents SET updated_at = GREATEST(updated_at, %s), last_stop_reason = %s,"
                " last_run_completion = %s, last_run_duration_ms = %s WHERE id = %s",
                (at_us, stop_reason, optional_us(completed_at), duration_ms, thread.agent_id),
            )
        assert cursor.rowcount == 1, "step commit for an agent that is not stored"
        if thread.conversation_id is not None:
            cursor = await db.execute(
                "UPDATE conversations SET updated_at = GREATEST(updated_at, %s) WHERE id = %s",
                (at_us, thread.conversation_id),
            )
            assert cursor.rowcount == 1, "step commit for a conversation that is not stored"
        if thread.message_ids is not None:
            await self._replace_context(
                db, thread.agent_id, thread.conversation_id, thread.message_ids
            )
        elif thread.appended:
            start = await self._take_positions(
                db, thread.agent_id, thread.conversation_id, len(thread.appended)
            )
            assert start is not None, "in-context list of a thread that is not stored"
            await self._insert_context(
                db, thread.agent_id, thread.conversation_id, start, thread.appended
            )

    # Run events -------------------------------------------------------------------------

    async def _insert_run_events(self, db: Connection, events: Sequence[RunEvent]) -> None:
        if events:
            await db.cursor().executemany(
                "INSERT INTO run_events (run_id, seq_id, event, data) VALUES (%s, %s, %s, %s)",
                [(e.run_id, e.seq_id, e.event, e.data) for e in events],
            )

    async def append_run_events(self, events: Sequence[RunEvent]) -> None:
        if events:
            async with self._tx() as db:
                await self._insert_run_events(db, events)

    async def list_run_events(self, run_id: str, after_seq: int, limit: int) -> list[RunEvent]:
        rows = await self._read(
            "SELECT seq_id, event, data FROM run_events WHERE run_id = %s AND seq_id > %s"
            " ORDER BY seq_id LIMIT %s",
            (run_id, after_seq, limit),
        )
        return [event_from_row(run_id, row) for row in rows]

    async def last_run_seq(self, run_id: str) -> int:
        rows = await self._read(
            "SELECT coalesce(MAX(seq_id), 0) FROM run_events WHERE run_id = %s", (run_id,)
        )
        return int(rows[0][0])

    async def find_run_by_request_token(self, agent_id: str, token: str) -> Run | None:
        rows = await self._read(
            "SELECT data FROM runs WHERE agent_id = %s AND request_token = %s"
            " ORDER BY created_at DESC, id DESC LIMIT 1",
            (agent_id, token),
        )
        return Run.model_validate_json(rows[0][0]) if rows else None

"""PostgreSQL rows for messages, runs and steps, and the step commit: the "messages and
runs" role of the Store (`_roles.MessagesAndRuns`), with the semantics of the SQLite
store's methods of the same names (`_sqlite_runs.py`; the conformance suite,
tests/storage/test_conformance_runs.py, runs the same assertions on both).

Differences from SQLite that are not visible through the protocol:
- No cache of parsed messages. SQLite's is sound because one process writes the file;
  here several servers may share the database, and a message one of them deleted (a reset,
  an agent deleted) would still be served from another's cache. Turns keep their thread's
  messages in the agent's activation anyway (`context_since`), so what is left to cache is
  the occasional overview or export.
- Writers run concurrently: a step commit locks its agent's row first, then the blocks
  it changes in id order, before changing anything, so commits of one agent take turns,
  commits of several agents that change the same shared blocks in different orders wait
  for each other instead of deadlocking, and neither deadlocks with an update of the
  agent. Pruning takes its runs with SKIP LOCKED.
"""

from collections.abc import Sequence
from typing import Final

from kelpie.schemas import Message, Run, RunEvent, Step, us_from_datetime
from kelpie.storage._commits import BlockChange, StepCommit
from kelpie.storage._pg_rows import Connection, PgRows
from kelpie.storage._queries import MessageQuery, Page, RunQuery
from kelpie.storage._row_shapes import RUN_COLUMNS, STEP_COLUMNS, run_values, step_values

_ACTIVE_STATUSES: Final = ("created", "running")


def _thread(column: str, conversation_id: str | None) -> tuple[str, list[object]]:
    """`column` names this thread: NULL for the agent's own (IS NULL, which the composite
    indexes serve, where IS NOT DISTINCT FROM would not)."""
    if conversation_id is None:
        return f"{column} IS NULL", []
    return f"{column} = %s", [conversation_id]


def _messages(rows: Sequence[tuple[str]]) -> list[Message]:
    return [Message.model_validate_json(row[0]) for row in rows]


class RunRows(PgRows):
    # Messages --------------------------------------------------------------------------

    async def insert_messages(self, messages: Sequence[Message]) -> None:
        async with self._tx() as db:
            await self._insert_messages(db, messages)

    async def get_messages(self, message_ids: Sequence[str]) -> list[Message]:
        """The messages with these ids, in the order asked for (missing ones skipped)."""
        if not message_ids:
            return []
        rows = await self._read(
            "SELECT data FROM messages WHERE id = ANY(%s)", (list(dict.fromkeys(message_ids)),)
        )
        found = {message.id: message for message in _messages(rows)}
        return [found[i] for i in message_ids if i in found]

    async def list_messages(self, query: MessageQuery, page: Page) -> list[Message]:
        where = ["m.agent_id = %s"]
        params: list[object] = [query.agent_id]
        if not query.all_threads:
            thread, thread_params = _thread("m.conversation_id", query.conversation_id)
            if query.shared_ids:
                thread = f"({thread} OR m.id = ANY(%s))"
                thread_params.append(list(query.shared_ids))
            where.append(thread)
            params.extend(thread_params)
        return _messages(await self._page_rows("m.data", "messages", "m", page, where, params))

    async def list_all_messages(self, conversation_id: str | None, page: Page) -> list[Message]:
        """Every agent's messages (`GET /v1/messages/`), optionally of one conversation."""
        where, params = [], list[object]()
        if conversation_id is not None:
            where.append("m.conversation_id = %s")
            params.append(conversation_id)
        return _messages(await self._page_rows("m.data", "messages", "m", page, where, params))

    async def list_run_messages(self, run_id: str, page: Page) -> list[Message]:
        rows = await self._page_rows("m.data", "messages", "m", page, ["m.run_id = %s"], [run_id])
        return _messages(rows)

    async def count_messages(self, agent_id: str) -> int:
        rows = await self._read("SELECT COUNT(*) FROM messages WHERE agent_id = %s", (agent_id,))
        return int(rows[0][0])

    async def delete_agent_messages(self, agent_id: str, keep_ids: Sequence[str]) -> int:
        """Deletes the agent's messages except `keep_ids` (reset); returns how many. Their
        search rows go with them (foreign key)."""
        async with self._tx() as db:
            cursor = await db.execute(
                "DELETE FROM messages WHERE agent_id = %s AND id <> ALL(%s)",
                (agent_id, list(keep_ids)),
            )
            return cursor.rowcount

    # Runs and steps --------------------------------------------------------------------

    @staticmethod
    async def _write_run(db: Connection, run: Run) -> None:
        await db.execute(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
            " completed_at = excluded.completed_at, data = excluded.data",
            run_values(run),
        )

    async def save_run(self, run: Run, events: Sequence[RunEvent] = ()) -> None:
        """The run's state, and the stream events that go with it (a run that ends outside
        a step, e.g. failed at start-up, also ends its stored stream)."""
        async with self._tx() as db:
            await self._write_run(db, run)
            await self._insert_run_events(db, events)

    async def get_run(self, run_id: str) -> Run | None:
        rows = await self._read("SELECT data FROM runs WHERE id = %s", (run_id,))
        return Run.model_validate_json(rows[0][0]) if rows else None

    async def list_runs(self, query: RunQuery, page: Page) -> list[Run]:
        where: list[str] = []
        params: list[object] = []
        if len(query.agent_ids) == 1:
            # `= ANY` on PostgreSQL 16 cannot walk runs_by_agent in order: it sorts them all.
            where.append("r.agent_id = %s")
            params.append(query.agent_ids[0])
        elif query.agent_ids:
            where.append("r.agent_id = ANY(%s)")
            params.append(list(query.agent_ids))
        if query.conversation_id is not None:
            thread, thread_params = _thread("r.conversation_id", query.conversation_id or None)
            where.append(thread)
            params.extend(thread_params)
        if query.statuses:
            where.append("r.status = ANY(%s)")
            params.append(list(query.statuses))
        if query.background is not None:
            where.append("r.background = %s")
            params.append(query.background)
        rows = await self._page_rows("r.data", "runs", "r", page, where, params)
        return [Run.model_validate_json(row[0]) for row in rows]

    async def active_runs(self) -> list[Run]:
        """Runs not finished: after a restart, each is resumed or failed."""
        rows = await self._read(
            "SELECT data FROM runs WHERE status = ANY(%s) ORDER BY created_at, id",
            (list(_ACTIVE_STATUSES),),
        )
        return [Run.model_validate_json(row[0]) for row in rows]

    async def prune_run_streams(self, created_before_us: int, runs_max: int) -> int:
        """Deletes the stored streams of up to `runs_max` background runs created before
        `created_before_us` that have ended (never a running run's), marking each run so
        readers are told its stream expired; returns how many runs were pruned. Runs another
        pruner (or a writer) holds are skipped, so concurrent passes never count one twice."""
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE runs SET stream_pruned = TRUE WHERE id IN (SELECT id FROM runs"
                " WHERE background AND NOT stream_pruned AND created_at < %s"
                " AND status <> ALL(%s) ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING id",
                (created_before_us, list(_ACTIVE_STATUSES), runs_max),
            )
            ids = [row[0] for row in await cursor.fetchall()]
            if ids:
                await db.execute("DELETE FROM run_events WHERE run_id = ANY(%s)", (ids,))
        return len(ids)

    async def run_stream_pruned(self, run_id: str) -> bool:
        rows = await self._read("SELECT stream_pruned FROM runs WHERE id = %s", (run_id,))
        return bool(rows and rows[0][0])

    async def list_steps(self, run_id: str | None, agent_id: str | None, page: Page) -> list[Step]:
        where: list[str] = []
        params: list[object] = []
        if run_id is not None:
            where.append("s.run_id = %s")
            params.append(run_id)
        if agent_id is not None:
            where.append("s.agent_id = %s")
            params.append(agent_id)
        rows = await self._page_rows("s.data", "steps", "s", page, where, params)
        return [Step.model_validate_json(row[0]) for row in rows]

    async def get_step(self, step_id: str) -> Step | None:
        rows = await self._read("SELECT data FROM steps WHERE id = %s", (step_id,))
        return Step.model_validate_json(rows[0][0]) if rows else None

    # The step commit -------------------------------------------------------------------

    async def commit_step(self, commit: StepCommit) -> None:
        """Everything the step changed, in one transaction, in SQLite's order."""
        agent_id = commit.thread.agent_id
        step_id = None if commit.step is None else commit.step.id
        attached_at = us_from_datetime(commit.thread.updated_at)
        async with self._tx() as db:
            # The agent's row first (the thread update moves it last): an update of the agent
            # that rewrites its links, run meanwhile, would otherwise hold the agent while
            # waiting for a block link this commit holds.
            locked = await db.execute(
                "SELECT 1 FROM agents WHERE id = %s FOR NO KEY UPDATE", (agent_id,)
            )
            agent = await locked.fetchone()
            assert agent is not None, "step commit for an agent that is not stored"
            if commit.run is not None:
                await self._write_run(db, commit.run)
            if commit.step is not None:
                await db.execute(
                    f"INSERT INTO steps ({STEP_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
                    step_values(commit.step),
                )
            await self._insert_messages(db, commit.messages)
            if commit.blocks_changed:
                # In id order, so commits of different agents changing the same shared
                # blocks cannot deadlock. NO KEY UPDATE, as `_change_block`.
                await db.execute(
                    "SELECT 1 FROM blocks WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
                    (sorted({changed.block.id for changed in commit.blocks_changed}),),
                )
            for changed in commit.blocks_changed:
                change = BlockChange(
                    source="tool",
                    agent_id=agent_id,
                    tool_call_id=changed.tool_call_id,
                    step_id=step_id,
                )
                await self._change_block(db, changed.block, change)
            for block in commit.blocks_created:
                await self._write_block_row(db, block, insert=True)
                await db.execute(
                    "INSERT INTO agent_blocks (agent_id, block_id, label, attached_at)"
                    " VALUES (%s, %s, %s, %s)",
                    (agent_id, block.id, block.label, attached_at),
                )
            for passage in commit.passages:
                await self._insert_passage(db, passage)
            await self._write_step_working_memory(db, commit)
            if commit.blocks_detached:
                await db.execute(
                    "DELETE FROM agent_blocks WHERE agent_id = %s AND block_id = ANY(%s)",
                    (agent_id, list(commit.blocks_detached)),
                )
            await self._write_thread(db, commit.thread)
            await self._insert_run_events(db, commit.events)

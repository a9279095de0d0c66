"""The base of SqliteStore's mixins: the helpers one mixin needs from the store or from
another mixin. It comes last in SqliteStore's method order, so these stubs only stand in
for the real methods; they are never called."""

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from kelpie.schemas import AgentConfig, Block, Message, Passage, RunEvent
from kelpie.storage._commits import BlockChange, StepCommit, ThreadUpdate
from kelpie.storage._queries import Page


class SqliteRows:
    # SqliteStore ------------------------------------------------------------------------

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _paged(
        self,
        table: str,
        alias: str,
        page: Page,
        where: list[str],
        params: list[object],
        column: str = "created_at",
    ) -> tuple[str, list[object], bool]:
        raise NotImplementedError

    def _write_agent_row(self, db: sqlite3.Connection, agent: AgentConfig) -> None:
        raise NotImplementedError

    def _write_block_row(self, db: sqlite3.Connection, block: Block, *, insert: bool) -> None:
        raise NotImplementedError

    @staticmethod
    def _set_agent_tools(
        db: sqlite3.Connection, agent_id: str, tool_ids: Sequence[str], at_us: int
    ) -> None:
        raise NotImplementedError

    @staticmethod
    def _touch_agent(db: sqlite3.Connection, agent_id: str, at_us: int) -> None:
        raise NotImplementedError

    # HistoryRows ------------------------------------------------------------------------

    def _change_block(self, db: sqlite3.Connection, block: Block, change: BlockChange) -> None:
        raise NotImplementedError

    # WorkingMemoryRows ------------------------------------------------------------------

    def _write_step_working_memory(self, db: sqlite3.Connection, commit: StepCommit) -> None:
        raise NotImplementedError

    # RunRows ----------------------------------------------------------------------------

    def _insert_messages(self, db: sqlite3.Connection, messages: Sequence[Message]) -> None:
        raise NotImplementedError

    # ThreadRows -------------------------------------------------------------------------

    def _insert_run_events(self, db: sqlite3.Connection, events: Sequence[RunEvent]) -> None:
        raise NotImplementedError

    def _write_thread(self, db: sqlite3.Connection, thread: ThreadUpdate) -> None:
        raise NotImplementedError

    # ArchiveRows and SearchRows -----------------------------------------------------------

    def _insert_passage(self, db: sqlite3.Connection, passage: Passage) -> None:
        raise NotImplementedError

    def _index_messages(self, db: sqlite3.Connection, messages: Sequence[Message]) -> None:
        raise NotImplementedError

"""Write payloads that must land together: an agent step is one transaction, and a block
change lands with its history entry."""

import dataclasses
import datetime as dt
from typing import final

from kelpie.schemas import (
    AgentConfig,
    Block,
    BlockChangeSource,
    BlockVersionSide,
    Message,
    Passage,
    Run,
    RunEvent,
    Step,
    Tool,
    WorkingMemoryEntry,
)


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class ThreadUpdate:
    """A change of a message thread's in-context list: the agent's own thread
    (conversation_id None) or one conversation's. Only these fields are written, so a
    turn never overwrites what a concurrent API call changed on the agent.

    `message_ids` replaces the whole list (compaction, reset); otherwise `appended` ids
    go after the stored ones, which costs the same however long the thread is."""

    agent_id: str
    conversation_id: str | None
    updated_at: dt.datetime
    message_ids: tuple[str, ...] | None = None
    appended: tuple[str, ...] = ()
    # A run that just ended: its outcome is recorded on the agent (last_run_* fields).
    finished_run: Run | None = None

    def __post_init__(self) -> None:
        assert self.message_ids is None or not self.appended, "replace or append, not both"

    def next_head(self, head: int) -> int:
        """The thread's context head after this update, from the head before it (see
        `ContextIds`)."""
        if self.message_ids is not None:
            return head + max(1, len(self.message_ids))
        return head + len(self.appended)


@final
@dataclasses.dataclass(frozen=True)
class ContextIds:
    """A thread's in-context message ids and its head: a number that grows with every
    write of the list (an append of k ids adds k, a replacement at least 1), so a copy
    taken at one head is current exactly while the stored head is the same."""

    head: int
    ids: tuple[str, ...]


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockChange:
    """Who changed a block, for its history entry (written in the change's transaction)."""

    source: BlockChangeSource
    agent_id: str | None = None
    tool_call_id: str | None = None
    step_id: str | None = None
    restored_seq: int | None = None
    restored_side: BlockVersionSide | None = None

    def __post_init__(self) -> None:
        if self.source == "tool":
            assert self.agent_id is not None, "a tool change names its agent"
            assert self.tool_call_id is not None, "a tool change names its tool call"
        if self.source == "restore":
            assert self.restored_seq is not None, "a restore names the entry it restores"
            assert self.restored_side is not None, "a restore names the side it restores"


@final
@dataclasses.dataclass(frozen=True)
class ChangedBlock:
    """An existing block as one tool call left it."""

    block: Block
    tool_call_id: str


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class StepCommit:
    """Everything one agent step changed. Committed atomically: after a crash either all of
    it is there or none of it, and a reply is acknowledged only after it returns."""

    thread: ThreadUpdate
    messages: tuple[Message, ...] = ()
    # Existing blocks with new values, in the order the tool calls changed them (a block
    # changed by two calls appears twice); each gets its history entry.
    blocks_changed: tuple[ChangedBlock, ...] = ()
    blocks_created: tuple[Block, ...] = ()  # new blocks, attached to the agent
    blocks_detached: tuple[str, ...] = ()  # block ids taken off the agent
    passages: tuple[Passage, ...] = ()  # archival memory written by the step
    # The agent's working-memory keys set and deleted by the step (disjoint keys).
    working_memory_set: tuple[WorkingMemoryEntry, ...] = ()
    working_memory_deleted: tuple[str, ...] = ()
    run: Run | None = None
    step: Step | None = None
    # Stream events of a background run that the step produced (stored before any is sent).
    events: tuple[RunEvent, ...] = ()


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class NewAgent:
    """An agent to insert, with what is its own: blocks made for it alone, its
    attachments (in order) and its history."""

    agent: AgentConfig
    new_blocks: tuple[Block, ...] = ()
    block_ids: tuple[str, ...] = ()  # every block it sees, its own and shared ones
    tool_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentsImport:
    """An agent file's worth of writes, committed atomically: an import that fails
    half-way leaves nothing behind."""

    tools_created: tuple[Tool, ...] = ()
    tools_replaced: tuple[Tool, ...] = ()  # stored tools the file redefines (same id)
    blocks_created: tuple[Block, ...] = ()  # blocks the file's agents may share
    agents: tuple[NewAgent, ...] = ()

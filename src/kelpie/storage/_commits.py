"""Write payloads that must land together: an agent step is one transaction, and a block
change lands with its history entry."""

import dataclasses
from typing import final

from kelpie.schemas import (
    AgentConfig,
    Block,
    BlockChangeSource,
    BlockVersionSide,
    Message,
    Passage,
    Run,
    Step,
    WorkingMemoryEntry,
)


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

    agent: AgentConfig  # the agent's new state (in-context message ids, timestamps)
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

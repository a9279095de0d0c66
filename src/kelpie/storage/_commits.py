"""Write payloads that must land together: an agent step is one transaction."""

import dataclasses
from typing import final

from kelpie.schemas import AgentConfig, Block, Message, Passage, Run, Step


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class StepCommit:
    """Everything one agent step changed. Committed atomically: after a crash either all of
    it is there or none of it, and a reply is acknowledged only after it returns."""

    agent: AgentConfig  # the agent's new state (in-context message ids, timestamps)
    messages: tuple[Message, ...] = ()
    blocks_changed: tuple[Block, ...] = ()  # existing blocks with new values
    blocks_created: tuple[Block, ...] = ()  # new blocks, attached to the agent
    blocks_detached: tuple[str, ...] = ()  # block ids taken off the agent
    passages: tuple[Passage, ...] = ()  # archival memory written by the step
    run: Run | None = None
    step: Step | None = None

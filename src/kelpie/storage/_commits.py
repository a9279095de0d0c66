"""Write payloads that must land together: an agent step is one transaction."""

import dataclasses
import datetime as dt
from typing import final

from kelpie.schemas import AgentConfig, Block, Message, Passage, Run, RunEvent, Step, Tool


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class ThreadUpdate:
    """A message thread's new in-context list: the agent's own thread (conversation_id
    None, kept on the agent) or one conversation's. Only these fields are written, so a
    turn never overwrites what a concurrent API call changed on the agent."""

    agent_id: str
    conversation_id: str | None
    message_ids: tuple[str, ...]
    updated_at: dt.datetime
    # A run that just ended: its outcome is recorded on the agent (last_run_* fields).
    finished_run: Run | None = None


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class StepCommit:
    """Everything one agent step changed. Committed atomically: after a crash either all of
    it is there or none of it, and a reply is acknowledged only after it returns."""

    thread: ThreadUpdate
    messages: tuple[Message, ...] = ()
    blocks_changed: tuple[Block, ...] = ()  # existing blocks with new values
    blocks_created: tuple[Block, ...] = ()  # new blocks, attached to the agent
    blocks_detached: tuple[str, ...] = ()  # block ids taken off the agent
    passages: tuple[Passage, ...] = ()  # archival memory written by the step
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

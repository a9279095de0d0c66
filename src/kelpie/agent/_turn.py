"""What one turn needs and what it produces."""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from kelpie.llm import ChatMessage, LlmClient, LlmError, ToolCall, ToolSpec, Usage
from kelpie.schemas import (
    AgentState,
    ApprovalDecision,
    Block,
    LlmConfig,
    Message,
    Run,
    RunEvent,
    StopReason,
    Tool,
    ToolResult,
)

if TYPE_CHECKING:
    from kelpie.agent._context import ThreadContext

Item = dict[str, Any]
# Writes a step's records together with the stream events it is handed.
WriteWithEvents = Callable[[tuple[RunEvent, ...]], Awaitable[None]]


class TurnEvents(Protocol):
    """Where a turn's stream items go. A background run stores them (each with a seq id)
    in the same transaction as the step that produced them, and only then sends them; a
    plain stream sends them once the step is committed; a JSON request drops them."""

    async def delta(self, item: Item) -> None:
        """A partial message streamed token by token, before its step commits."""
        ...

    async def commit(self, items: Sequence[Item], write: WriteWithEvents, *, final: bool) -> None:
        """Runs `write` with the stored events for `items`, then sends them. `final`:
        these are the run's last items; the stream ends after them."""
        ...


class NoEvents:
    """For turns nobody streams (JSON replies, `/messages/async`)."""

    async def delta(self, item: Item) -> None:
        return None

    async def commit(self, items: Sequence[Item], write: WriteWithEvents, *, final: bool) -> None:
        await write(())


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApprovalReply:
    """A client's answer to the thread's pending approval request, checked against it."""

    request: Message  # the assistant message whose tool calls waited
    decisions: dict[str, ApprovalDecision]
    results: dict[str, ToolResult]
    # The stored approval message's fields (approvals, approve, reason, otid, ...).
    message: dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Turn:
    agent: AgentState
    blocks: Sequence[Block]
    tools: Sequence[Tool]
    llm: LlmClient
    llm_config: LlmConfig
    run: Run
    conversation_id: str | None
    # The thread's in-context messages when the turn starts (kept by the activation).
    context: "ThreadContext"
    # Input messages as Message fields (role, text, content_parts, otid, sender_id, name).
    input: Sequence[dict[str, Any]]
    approval: ApprovalReply | None = None
    max_steps: int
    stream_tokens: bool = False
    events: TurnEvents = dataclasses.field(default_factory=NoEvents)
    client_tool_names: frozenset[str] = frozenset()
    # The agent's secrets: the environment its sandboxed tools run with.
    tool_environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Tools the client runs itself, offered to the model for this turn only.
    client_tools: tuple[ToolSpec, ...] = ()
    # (name, description, location) of the skills the client offers, for the prompt only.
    client_skills: tuple[tuple[str, str, str], ...] = ()
    system_override: str | None = None
    use_assistant_message: bool = True
    include_compaction_messages: bool = False
    recall_count: int = 0
    archival_count: int = 0
    # Set when the run is cancelled: the loop stops at once, even mid model call.
    cancelled: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TurnResult:
    messages: list[Message]  # every message the turn added, input first
    stop_reason: StopReason
    usage: Usage
    steps: int
    run: Run
    error: LlmError | None = None


def to_chat(messages: Sequence[Message]) -> list[ChatMessage]:
    """Stored history in the provider-neutral shape the model is sent. Approval replies
    (and requests for calls from code) are not sent: the tool results they produced are."""
    chat: list[ChatMessage] = []
    for message in messages:
        if message.code_pause is not None:
            continue  # an approval request for a call code made: the model made none
        if message.role == "tool":
            chat.append(
                ChatMessage(
                    role="tool", content=message.text or "", tool_call_id=message.tool_call_id
                )
            )
        elif message.role == "assistant":
            calls = tuple(
                ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in message.tool_calls
            )
            chat.append(ChatMessage(role="assistant", content=message.text, tool_calls=calls))
        elif message.role == "summary":
            chat.append(ChatMessage(role="user", content=message.text or ""))
        elif message.role != "approval":
            chat.append(ChatMessage(role=message.role, content=message.text or ""))
    return chat

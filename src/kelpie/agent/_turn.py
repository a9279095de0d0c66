"""What one turn needs and what it produces."""

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kelpie.llm import ChatMessage, LlmClient, LlmError, ToolCall, ToolSpec, Usage
from kelpie.schemas import AgentState, Block, LlmConfig, Message, Run, StopReason, Tool

Emit = Callable[[dict[str, Any]], Awaitable[None]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Turn:
    agent: AgentState
    blocks: Sequence[Block]
    tools: Sequence[Tool]
    llm: LlmClient
    llm_config: LlmConfig
    run: Run
    conversation_id: str | None
    # Input messages as Message fields (role, text, content_parts, otid, sender_id, name).
    input: Sequence[dict[str, Any]]
    max_steps: int
    stream_tokens: bool = False
    emit: Emit | None = None
    client_tool_names: frozenset[str] = frozenset()
    # Tools the client runs itself, offered to the model for this turn only.
    client_tools: tuple[ToolSpec, ...] = ()
    system_override: str | None = None
    use_assistant_message: bool = True
    recall_count: int = 0
    archival_count: int = 0
    cancelled: Callable[[], bool] = lambda: False


@dataclasses.dataclass(frozen=True, kw_only=True)
class TurnResult:
    messages: list[Message]  # every message the turn added, input first
    stop_reason: StopReason
    usage: Usage
    steps: int
    run: Run
    error: LlmError | None = None


def to_chat(messages: Sequence[Message]) -> list[ChatMessage]:
    """Stored history in the provider-neutral shape the model is sent."""
    chat: list[ChatMessage] = []
    for message in messages:
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
        else:
            chat.append(ChatMessage(role=message.role, content=message.text or ""))
    return chat

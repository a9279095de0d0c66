"""The LLM seam: what the agent loop sends a model and what it gets back, independent of
any provider SDK. Providers translate to and from these; the simulator scripts them."""

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, final

from kelpie.schemas import LlmConfig

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "error"]


@final
@dataclasses.dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    # The arguments exactly as the model wrote them: a JSON object as a string, possibly
    # malformed (the loop reports that to the model as a tool error).
    arguments: str


@final
@dataclasses.dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    # For role "tool": which call this answers.
    tool_call_id: str | None = None
    name: str | None = None
    # Each provider's wire encoding of this message, made once while it lives: a kept
    # thread context holds its history's messages between turns, and every request sends
    # them all again. Not part of the message's value.
    encoded: dict[str, bytes] = dataclasses.field(
        default_factory=dict, compare=False, hash=False, repr=False
    )


@final
@dataclasses.dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    # JSON schema of the arguments object.
    parameters: dict[str, Any]


@final
class HistoryEncodings:
    """A kept thread history's messages joined in each provider's wire encoding, kept
    between requests: while it lives the history only grows at its end, so a request
    encodes only the messages added since the last one. Whoever keeps the history owns it
    (and drops it when the history is replaced)."""

    def __init__(self) -> None:
        # Provider → (how many of the history's first messages, their joined encoding).
        self.joined: dict[str, tuple[int, bytes]] = {}


@final
@dataclasses.dataclass(frozen=True)
class LlmRequest:
    config: LlmConfig
    messages: tuple[ChatMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    # "required" forces a tool call (tool rules use it); None lets the provider default.
    tool_choice: Literal["auto", "required", "none"] | None = None
    parallel_tool_calls: bool = False
    # messages[history_start : history_start + history_len] is a kept history whose joined
    # encodings `history` holds between requests (None: nothing is kept).
    history: HistoryEncodings | None = dataclasses.field(default=None, compare=False)
    history_start: int = 0
    history_len: int = 0


@final
@dataclasses.dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0


@final
@dataclasses.dataclass(frozen=True)
class LlmResponse:
    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: FinishReason
    usage: Usage
    # Native reasoning text, for models that expose it.
    reasoning: str | None = None


@final
@dataclasses.dataclass(frozen=True)
class LlmDelta:
    """A piece of a streamed answer. Text pieces carry `content` or `reasoning`; tool-call
    pieces carry the call's `index` and, on its first piece, its `id` and `name`."""

    content: str | None = None
    reasoning: str | None = None
    tool_call_index: int | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    arguments: str | None = None


OnDelta = Callable[[LlmDelta], Awaitable[None]]


class LlmClient(Protocol):
    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        """Asks the model. With `on_delta`, streams the answer through it as it arrives
        and still returns the whole answer. Raises `LlmError` subclasses only."""
        ...

"""Anthropic's Messages API behind the LlmClient seam.

The Messages API differs from Chat Completions in shape only: the system prompt is a
parameter, tool calls and results are content blocks, one role may not follow itself, and
`max_tokens` is required. The SDK is imported on first use (it costs about two seconds).

`temperature` is never sent: API version 2026-10-21, which the 2.x SDKs speak, rejects it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypedDict, final

from kelpie.llm._catalog import Provider
from kelpie.llm._errors import LlmError, LlmProviderFailed, LlmRateLimited, LlmTimeout
from kelpie.llm._retry import LLM_REQUEST_TIMEOUT_S, retry_after_s, status_retryable
from kelpie.llm._types import (
    ChatMessage,
    FinishReason,
    LlmDelta,
    LlmRequest,
    LlmResponse,
    OnDelta,
    ToolCall,
    Usage,
)

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import (
        Message,
        MessageDeltaUsage,
        MessageParam,
        RawMessageStreamEvent,
        TextBlockParam,
        ToolChoiceParam,
        ToolParam,
        ToolResultBlockParam,
        ToolUseBlockParam,
    )
    from anthropic.types import Usage as AnthropicUsage
    from anthropic.types.message_create_params import MessageCreateParamsBase

    _Block: TypeAlias = TextBlockParam | ToolUseBlockParam | ToolResultBlockParam

# The Messages API requires a bound on the answer; this one is used when LlmConfig sets none.
ANTHROPIC_MAX_TOKENS_DEFAULT: Final = 4096
_STOP_REASONS: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}
# Error types of an `error` event inside a stream, which arrives with HTTP status 200.
_STREAM_ERRORS_RATE_LIMITED: Final = frozenset({"rate_limit_error"})
_STREAM_ERRORS_REFUSED: Final = frozenset(
    {"invalid_request_error", "authentication_error", "permission_error", "not_found_error"}
)


@final
class AnthropicClient:
    """Talks to one Anthropic base URL. `timeout_s` bounds each network wait (tests pass a small
    one); the SDK's retries are off because `RetryingLlm` does them."""

    def __init__(self, provider: Provider, *, timeout_s: float = LLM_REQUEST_TIMEOUT_S) -> None:
        import anthropic

        self._base_url = provider.base_url
        self._timeout_s = timeout_s
        self._sdk = anthropic.AsyncAnthropic(
            api_key=provider.api_key,
            base_url=provider.base_url,
            timeout=timeout_s,
            max_retries=0,
        )

    @property
    def base_url(self) -> str:
        return self._base_url

    async def aclose(self) -> None:
        await self._sdk.close()

    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        import anthropic
        import httpx2

        try:
            if on_delta is None:
                return _response_from_message(await self._create(request))
            return await self._stream(request, on_delta)
        except anthropic.AnthropicError as error:
            raise self._translate(error) from error
        # The SDK does not wrap transport errors raised while a stream is being read.
        except httpx2.TimeoutException as error:
            raise LlmTimeout(
                f"{self._base_url} stopped answering for {self._timeout_s} s"
            ) from error
        except httpx2.TransportError as error:
            raise LlmProviderFailed(f"lost the connection to {self._base_url}: {error}") from error

    async def _create(self, request: LlmRequest) -> Message:
        params = _create_params(request)
        return await self._sdk.messages.create(**_required(params), extra_body=_rest(params))

    async def _stream(self, request: LlmRequest, on_delta: OnDelta) -> LlmResponse:
        params = _create_params(request)
        stream = await self._sdk.messages.create(
            **_required(params), stream=True, extra_body=_rest(params)
        )
        assembly = _StreamAssembly()
        async with stream:
            async for event in stream:
                delta = assembly.add(event)
                if delta is not None:
                    await on_delta(delta)
        return assembly.response()

    def _translate(self, error: anthropic.AnthropicError) -> LlmError:
        import anthropic

        if isinstance(error, anthropic.APITimeoutError):
            return LlmTimeout(f"{self._base_url} did not answer within {self._timeout_s} s")
        if isinstance(error, anthropic.APIConnectionError):
            return LlmProviderFailed(f"cannot reach {self._base_url}: {error.__cause__ or error}")
        if not isinstance(error, anthropic.APIStatusError):
            return LlmProviderFailed(f"{self._base_url} failed: {error}")
        status = error.status_code
        headers = error.response.headers
        error_type, message = _error_fields(error)
        if status < 400:  # an `error` event in the middle of a stream
            detail = f"{self._base_url} failed mid-answer ({error_type}): {message}"
            if error_type in _STREAM_ERRORS_RATE_LIMITED:
                return LlmRateLimited(detail)
            return LlmProviderFailed(detail, retryable=error_type not in _STREAM_ERRORS_REFUSED)
        detail = f"{self._base_url} answered HTTP {status}: {message}"
        if isinstance(error, anthropic.RateLimitError):
            return LlmRateLimited(detail, retry_after_s=retry_after_s(headers))
        # 529 overloaded counts as a 5xx: retryable.
        return LlmProviderFailed(
            detail,
            retryable=status_retryable(status, headers),
            retry_after_s=retry_after_s(headers),
        )


def _error_fields(error: anthropic.APIStatusError) -> tuple[str, str]:
    """The error's type and the provider's sentence, from `{"error": {"type", "message"}}`."""
    body = error.body
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict):
        error_type, message = inner.get("type"), inner.get("message")
        if isinstance(error_type, str) and isinstance(message, str):
            return error_type, message
    return "unknown", error.message


def _tool_param(name: str, description: str, parameters: dict[str, object]) -> ToolParam:
    return {"name": name, "description": description, "input_schema": parameters}


def _create_params(request: LlmRequest) -> MessageCreateParamsBase:
    system, messages = _message_params(request.messages)
    params: MessageCreateParamsBase = {
        "model": request.config.model,
        "max_tokens": request.config.max_tokens or ANTHROPIC_MAX_TOKENS_DEFAULT,
        "messages": messages,
    }
    if system:
        params["system"] = system
    if request.tools:
        params["tools"] = [_tool_param(t.name, t.description, t.parameters) for t in request.tools]
        params["tool_choice"] = _tool_choice(request)
    return params


class _Required(TypedDict):
    model: str
    max_tokens: int
    messages: list[MessageParam]


def _required(params: MessageCreateParamsBase) -> _Required:
    """The arguments `create` must be given; the history goes in `_rest`. The SDK
    transforms its typed arguments at ~0.1 ms per message; `extra_body` is sent as given
    and wins over them, and these params are already in wire form."""
    return {"model": params["model"], "max_tokens": params["max_tokens"], "messages": []}


def _rest(params: MessageCreateParamsBase) -> dict[str, object]:
    return {key: value for key, value in params.items() if key not in ("model", "max_tokens")}


def _tool_choice(request: LlmRequest) -> ToolChoiceParam:
    if request.tool_choice == "none":
        return {"type": "none"}
    serial = not request.parallel_tool_calls
    if request.tool_choice == "required":
        return {"type": "any", "disable_parallel_tool_use": serial}
    return {"type": "auto", "disable_parallel_tool_use": serial}


def _tool_input(arguments: str) -> dict[str, object]:
    # Anthropic needs an object. Arguments the model once wrote as broken JSON are sent as
    # empty; the tool result that follows already tells the model what went wrong.
    try:
        parsed = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _blocks(message: ChatMessage) -> list[_Block]:
    """The content blocks of one message; empty text is left out, as the API rejects it."""
    blocks: list[_Block] = []
    if message.role == "tool":
        assert message.tool_call_id is not None, "a tool message must name the call it answers"
        result: ToolResultBlockParam = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content or "",
        }
        return [result]
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        use: ToolUseBlockParam = {
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": _tool_input(call.arguments),
        }
        blocks.append(use)
    return blocks


def _message_params(messages: tuple[ChatMessage, ...]) -> tuple[str, list[MessageParam]]:
    """The system prompt and the turns. Leading system messages form the prompt; a later
    one (a summary, say) becomes user text where it stands. Tool results are user turns,
    and consecutive turns of one role are merged, as the API requires."""
    leading = 0
    while leading < len(messages) and messages[leading].role == "system":
        leading += 1
    system = "\n\n".join(m.content for m in messages[:leading] if m.content)
    turns: list[tuple[Literal["user", "assistant"], list[_Block]]] = []
    for message in messages[leading:]:
        role: Literal["user", "assistant"] = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    params: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            params.append({"role": "user", "content": blocks})
        else:
            params.append({"role": "assistant", "content": blocks})
    return system, params


def _finish_reason(reason: str | None, tool_calls: tuple[ToolCall, ...]) -> FinishReason:
    if reason is not None and reason in _STOP_REASONS:
        return _STOP_REASONS[reason]
    return "tool_calls" if tool_calls else "stop"


@dataclasses.dataclass
class _Counts:
    """Token counts as Anthropic reports them: cached input apart from `input_tokens`."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    thinking: int = 0

    def update(self, usage: AnthropicUsage | MessageDeltaUsage) -> None:
        # A stream's final usage repeats or revises the first one's; absent fields stay.
        self.input = _first_int(usage.input_tokens, self.input)
        self.cache_read = _first_int(usage.cache_read_input_tokens, self.cache_read)
        self.cache_write = _first_int(usage.cache_creation_input_tokens, self.cache_write)
        self.output = usage.output_tokens
        if usage.output_tokens_details is not None:
            self.thinking = usage.output_tokens_details.thinking_tokens

    def usage(self) -> Usage:
        prompt = self.input + self.cache_read + self.cache_write
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.output,
            total_tokens=prompt + self.output,
            cached_input_tokens=self.cache_read,
            reasoning_tokens=self.thinking,
        )


def _first_int(value: int | None, default: int) -> int:
    return value if value is not None else default


def _usage(usage: AnthropicUsage) -> Usage:
    counts = _Counts()
    counts.update(usage)
    return counts.usage()


def _response_from_message(message: Message) -> LlmResponse:
    text: list[str] = []
    thinking: list[str] = []
    tool_calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "thinking":
            thinking.append(block.thinking)
        elif block.type == "tool_use":
            tool_calls.append(ToolCall(block.id, block.name, json.dumps(block.input)))
    calls = tuple(tool_calls)
    return LlmResponse(
        content="".join(text) if text else None,
        tool_calls=calls,
        finish_reason=_finish_reason(message.stop_reason, calls),
        usage=_usage(message.usage),
        reasoning="".join(thinking) if thinking else None,
    )


@final
class _StreamAssembly:
    """Turns stream events into deltas as they come, and into one response at the end.
    Tool calls are numbered among themselves (0, 1, …), not by content-block index."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._thinking: list[str] = []
        # Content-block index → the tool call's number, id, name and argument pieces.
        self._tool_of_block: dict[int, int] = {}
        self._tool_calls: list[tuple[str, str, list[str]]] = []
        self._stop_reason: str | None = None
        self._counts = _Counts()

    def add(self, event: RawMessageStreamEvent) -> LlmDelta | None:
        if event.type == "message_start":
            self._counts.update(event.message.usage)
        elif event.type == "message_delta":
            self._stop_reason = event.delta.stop_reason
            self._counts.update(event.usage)
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                number = len(self._tool_calls)
                self._tool_of_block[event.index] = number
                self._tool_calls.append((block.id, block.name, []))
                return LlmDelta(tool_call_index=number, tool_call_id=block.id, tool_name=block.name)
            if block.type == "text" and block.text:
                self._text.append(block.text)
                return LlmDelta(content=block.text)
        elif event.type == "content_block_delta":
            return self._add_block_delta(event.index, event.delta)
        return None

    def _add_block_delta(self, index: int, delta: object) -> LlmDelta | None:
        from anthropic.types import InputJSONDelta, TextDelta, ThinkingDelta

        if isinstance(delta, TextDelta) and delta.text:
            self._text.append(delta.text)
            return LlmDelta(content=delta.text)
        if isinstance(delta, ThinkingDelta) and delta.thinking:
            self._thinking.append(delta.thinking)
            return LlmDelta(reasoning=delta.thinking)
        if isinstance(delta, InputJSONDelta) and delta.partial_json:
            number = self._tool_of_block.get(index)
            if number is None:  # the input of a server-side tool, which is not ours to run
                return None
            self._tool_calls[number][2].append(delta.partial_json)
            return LlmDelta(tool_call_index=number, arguments=delta.partial_json)
        return None

    def response(self) -> LlmResponse:
        # A call without arguments streams no JSON at all; unstreamed, its input is `{}`.
        calls = tuple(
            ToolCall(call_id, name, "".join(pieces) or "{}")
            for call_id, name, pieces in self._tool_calls
        )
        return LlmResponse(
            content="".join(self._text) if self._text else None,
            tool_calls=calls,
            finish_reason=_finish_reason(self._stop_reason, calls),
            usage=self._counts.usage(),
            reasoning="".join(self._thinking) if self._thinking else None,
        )

"""OpenAI's Chat Completions API behind the LlmClient seam, for OpenAI itself and for any
OpenAI-compatible server (vLLM, Ollama, llama.cpp server, LM Studio).

The SDK is imported on first use, not at module import: it costs about a second, and
Kelpie must start in under one. Every SDK exception is translated to an `LlmError` here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, final

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
    import openai
    from openai.types import CompletionUsage
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionChunk,
        ChatCompletionFunctionToolParam,
        ChatCompletionMessageParam,
    )

# OpenAI's reasoning models refuse `temperature` and `max_tokens` (they take
# `max_completion_tokens`); OpenAI-compatible servers often know only `max_tokens`.
_REASONING_MODEL_PREFIXES: Final = ("o1", "o3", "o4", "gpt-5")
CHAT_COMPLETIONS_PATH: Final = "/chat/completions"
JSON_HEADERS: Final = {"Content-Type": "application/json"}
# The key of this provider's encoding in ChatMessage.encoded.
_ENCODING: Final = "openai"
_FINISH_REASONS: Final[dict[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


@final
class OpenAIClient:
    """Talks to one OpenAI-compatible base URL. `timeout_s` bounds each network wait (tests
    pass a small one); the SDK's retries are off because `RetryingLlm` does them."""

    def __init__(self, provider: Provider, *, timeout_s: float = LLM_REQUEST_TIMEOUT_S) -> None:
        import openai

        self._base_url = provider.base_url
        self._timeout_s = timeout_s
        self._sdk = openai.AsyncOpenAI(
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
        import openai

        try:
            if on_delta is None:
                completion = await self._create(request)
                return _response_from_completion(completion)
            return await self._stream(request, on_delta)
        except openai.OpenAIError as error:
            raise self._translate(error) from error

    async def _create(self, request: LlmRequest) -> ChatCompletion:
        from openai.types.chat import ChatCompletion

        return await self._sdk.post(
            CHAT_COMPLETIONS_PATH,
            cast_to=ChatCompletion,
            content=_request_body(request, {}),
            options={"headers": JSON_HEADERS},
        )

    async def _stream(self, request: LlmRequest, on_delta: OnDelta) -> LlmResponse:
        import openai
        from openai.types.chat import ChatCompletionChunk

        body = _request_body(request, {"stream": True, "stream_options": {"include_usage": True}})
        stream = await self._sdk.post(
            CHAT_COMPLETIONS_PATH,
            cast_to=ChatCompletionChunk,
            content=body,
            options={"headers": JSON_HEADERS},
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        assembly = _StreamAssembly()
        async with stream:
            try:
                async for chunk in stream:
                    for delta in assembly.add(chunk):
                        await on_delta(delta)
            except openai.APIConnectionError as error:
                if isinstance(error, openai.APITimeoutError):
                    raise
                detail = f"lost the connection to {self._base_url}: {error.__cause__ or error}"
                raise LlmProviderFailed(detail) from error
        return assembly.response()

    def _translate(self, error: openai.OpenAIError) -> LlmError:
        import openai

        if isinstance(error, openai.APITimeoutError):
            return LlmTimeout(f"{self._base_url} did not answer within {self._timeout_s} s")
        if isinstance(error, openai.APIConnectionError):
            return LlmProviderFailed(f"cannot reach {self._base_url}: {error.__cause__ or error}")
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            headers = error.response.headers
            detail = f"{self._base_url} answered HTTP {status}: {_provider_message(error)}"
            if isinstance(error, openai.RateLimitError):
                return LlmRateLimited(detail, retry_after_s=retry_after_s(headers))
            return LlmProviderFailed(
                detail,
                retryable=status_retryable(status, headers),
                retry_after_s=retry_after_s(headers),
            )
        # An error event inside a stream, or an answer the SDK could not read.
        return LlmProviderFailed(f"{self._base_url} failed: {error}")


def _provider_message(error: openai.APIStatusError) -> str:
    """The provider's own sentence: the SDK's message embeds the whole body."""
    body = error.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return error.message


def _request_body(request: LlmRequest, extra: dict[str, object]) -> bytes:
    """The request's JSON body, its messages spliced in from their kept encodings: the
    SDK's typed `create()` would transform (~0.13 ms a message) and encode the whole history
    on every request, where each message's bytes are made once (see ChatMessage.encoded)."""
    rest = json.dumps(
        {**_create_params(request), **extra}, ensure_ascii=False, separators=(",", ":")
    )
    assert rest.startswith('{"model":'), "a request names its model first"
    return b'{"messages":[' + _messages_json(request) + b"]," + rest[1:].encode()


def _messages_json(request: LlmRequest) -> bytes:
    """The messages joined, a kept history's part from its kept join plus what was added
    since (see HistoryEncodings): a long thread costs what it added, not its length."""
    messages, kept = request.messages, request.history
    if kept is None:
        return _joined(messages)
    start, end = request.history_start, request.history_start + request.history_len
    assert 0 <= start <= end <= len(messages), "the kept history lies within the messages"
    count, joined = kept.joined.get(_ENCODING, (0, b""))
    if count > request.history_len:  # not the history it was kept for: start again
        count, joined = 0, b""
    added = _joined(messages[start + count : end])
    if added:
        joined = joined + b"," + added if joined else added
    kept.joined[_ENCODING] = (request.history_len, joined)
    parts = (_joined(messages[:start]), joined, _joined(messages[end:]))
    return b",".join(part for part in parts if part)


def _joined(messages: Sequence[ChatMessage]) -> bytes:
    # Inline, not a call per message: at thousands of messages the call itself dominated.
    return b",".join([m.encoded.get(_ENCODING) or _message_json(m) for m in messages])


def _message_json(message: ChatMessage) -> bytes:
    encoded = message.encoded.get(_ENCODING)
    if encoded is None:
        param = _message_param(message)
        text = json.dumps(param, ensure_ascii=False, separators=(",", ":"))
        encoded = message.encoded[_ENCODING] = text.encode()
    return encoded


def _create_params(request: LlmRequest) -> dict[str, object]:
    """Everything of the request but its messages, in wire form."""
    config = request.config
    params: dict[str, object] = {"model": config.model}
    # Without tools, OpenAI refuses `tool_choice` and `parallel_tool_calls` outright.
    if request.tools:
        params["tools"] = [_tool_param(t.name, t.description, t.parameters) for t in request.tools]
        params["parallel_tool_calls"] = request.parallel_tool_calls
        if request.tool_choice is not None:
            params["tool_choice"] = request.tool_choice
    reasoning_model = config.model.startswith(_REASONING_MODEL_PREFIXES)
    if config.max_tokens is not None:
        params["max_completion_tokens" if reasoning_model else "max_tokens"] = config.max_tokens
    if config.temperature is not None and not reasoning_model:
        params["temperature"] = config.temperature
    return params


def _tool_param(
    name: str, description: str, parameters: dict[str, object]
) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _message_param(message: ChatMessage) -> ChatCompletionMessageParam:
    # `name` is left out: several OpenAI-compatible servers reject it.
    if message.role == "system":
        return {"role": "system", "content": message.content or ""}
    if message.role == "user":
        return {"role": "user", "content": message.content or ""}
    if message.role == "tool":
        assert message.tool_call_id is not None, "a tool message must name the call it answers"
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.content or "",
        }
    assert message.role == "assistant", f"unknown role {message.role}"
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content}
    return {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ],
    }


def _finish_reason(reason: str | None, tool_calls: tuple[ToolCall, ...]) -> FinishReason:
    if reason is not None and reason in _FINISH_REASONS:
        return _FINISH_REASONS[reason]
    return "tool_calls" if tool_calls else "stop"


def _usage(usage: CompletionUsage | None) -> Usage:
    if usage is None:
        return Usage()
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        cached_input_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )


def _reasoning_of(part: object) -> str | None:
    """Reasoning text that vLLM, DeepSeek and others add outside OpenAI's schema, as
    `reasoning_content` (or `reasoning`); the SDK keeps unknown fields as attributes."""
    for field in ("reasoning_content", "reasoning"):
        value = getattr(part, field, None)
        if isinstance(value, str) and value:
            return value
    return None


def _response_from_completion(completion: ChatCompletion) -> LlmResponse:
    from openai.types.chat import ChatCompletionMessageFunctionToolCall

    if not completion.choices:
        return LlmResponse(None, (), "stop", _usage(completion.usage))
    choice = completion.choices[0]
    message = choice.message
    tool_calls = tuple(
        ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
        for call in message.tool_calls or ()
        if isinstance(call, ChatCompletionMessageFunctionToolCall)
    )
    return LlmResponse(
        content=message.content,
        tool_calls=tool_calls,
        finish_reason=_finish_reason(choice.finish_reason, tool_calls),
        usage=_usage(completion.usage),
        reasoning=_reasoning_of(message),
    )


@dataclasses.dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = dataclasses.field(default_factory=list)


@final
class _StreamAssembly:
    """Turns stream chunks into deltas as they come, and into one response at the end."""

    def __init__(self) -> None:
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._tool_calls: dict[int, _ToolCallParts] = {}
        self._finish_reason: str | None = None
        self._usage: CompletionUsage | None = None

    def add(self, chunk: ChatCompletionChunk) -> list[LlmDelta]:
        if chunk.usage is not None:
            self._usage = chunk.usage
        deltas: list[LlmDelta] = []
        for choice in chunk.choices[:1]:
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
            delta = choice.delta
            reasoning = _reasoning_of(delta)
            if reasoning:
                self._reasoning.append(reasoning)
                deltas.append(LlmDelta(reasoning=reasoning))
            if delta.content:
                self._content.append(delta.content)
                deltas.append(LlmDelta(content=delta.content))
            for piece in delta.tool_calls or ():
                function = piece.function
                deltas.append(
                    self._add_tool_piece(
                        piece.index,
                        piece.id,
                        function.name if function else None,
                        function.arguments if function else None,
                    )
                )
        return deltas

    def _add_tool_piece(
        self, index: int, call_id: str | None, name: str | None, arguments: str | None
    ) -> LlmDelta:
        # Servers differ in how often they repeat the id and name; the listener gets each once.
        parts = self._tool_calls.setdefault(index, _ToolCallParts())
        new_id = call_id if call_id and not parts.id else None
        new_name = name if name and not parts.name else None
        parts.id = parts.id or new_id or ""
        parts.name = parts.name or new_name or ""
        if arguments:
            parts.arguments.append(arguments)
        return LlmDelta(
            tool_call_index=index,
            tool_call_id=new_id,
            tool_name=new_name,
            arguments=arguments or None,
        )

    def response(self) -> LlmResponse:
        tool_calls = tuple(
            ToolCall(id=parts.id, name=parts.name, arguments="".join(parts.arguments))
            for _, parts in sorted(self._tool_calls.items())
        )
        return LlmResponse(
            content="".join(self._content) if self._content else None,
            tool_calls=tool_calls,
            finish_reason=_finish_reason(self._finish_reason, tool_calls),
            usage=_usage(self._usage),
            reasoning="".join(self._reasoning) if self._reasoning else None,
        )

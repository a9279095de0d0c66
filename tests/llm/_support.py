"""Shared helpers for the LLM tests: driving the fake server's script, building requests,
calling a provider client on a fresh event loop, and a clock whose sleeps only record."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Final, Literal

import httpx

from kelpie.llm import (
    AnthropicClient,
    ChatMessage,
    LlmDelta,
    LlmRequest,
    LlmResponse,
    OpenAIClient,
    Provider,
    ToolCall,
    ToolSpec,
)
from kelpie.schemas import LlmConfig

Json = dict[str, Any]
Kind = Literal["openai", "anthropic"]

CONTROL_TIMEOUT_S: Final = 10.0
API_KEY: Final = "sk-test"
MODEL: Final = "fake-model"
WEATHER_TOOL: Final = ToolSpec(
    name="get_weather",
    description="Looks up the weather.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
TIME_TOOL: Final = ToolSpec(
    name="get_time",
    description="Tells the time.",
    parameters={"type": "object", "properties": {}},
)


class FakeLlm:
    """The fake server's control protocol (see tests/fakes/llm_server.py)."""

    def __init__(self, openai_url: str) -> None:
        self.openai_url = openai_url
        self.anthropic_url = openai_url.removesuffix("/v1")
        self._http = httpx.Client(base_url=self.anthropic_url, timeout=CONTROL_TIMEOUT_S)

    def close(self) -> None:
        self._http.close()

    def script(self, *entries: Json) -> None:
        self._http.post("/_script", json=list(entries)).raise_for_status()

    def clear(self) -> None:
        self._http.delete("/_script").raise_for_status()

    def requests(self) -> list[Json]:
        response = self._http.get("/_requests")
        response.raise_for_status()
        requests: list[Json] = response.json()["requests"]
        return requests

    def last_body(self) -> Json:
        requests = self.requests()
        assert requests, "the fake server received no model request"
        body: Json = requests[-1]["body"]
        return body

    def provider(self, kind: Kind) -> Provider:
        base_url = self.openai_url if kind == "openai" else self.anthropic_url
        return Provider(name=kind, kind=kind, base_url=base_url, api_key=API_KEY)


def llm_config(**overrides: Any) -> LlmConfig:
    fields: Json = {"model": MODEL, "model_endpoint_type": "openai", "context_window": 8192}
    return LlmConfig(**(fields | overrides))


def chat_request(
    *messages: ChatMessage,
    tools: tuple[ToolSpec, ...] = (),
    tool_choice: Literal["auto", "required", "none"] | None = None,
    parallel_tool_calls: bool = False,
    **config: Any,
) -> LlmRequest:
    if not messages:
        messages = (ChatMessage("system", "You are terse."), ChatMessage("user", "Hello?"))
    return LlmRequest(
        config=llm_config(**config),
        messages=messages,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
    )


def make_client(provider: Provider, timeout_s: float) -> OpenAIClient | AnthropicClient:
    if provider.kind == "anthropic":
        return AnthropicClient(provider, timeout_s=timeout_s)
    return OpenAIClient(provider, timeout_s=timeout_s)


def complete(
    provider: Provider, request: LlmRequest, *, stream: bool = False, timeout_s: float = 10.0
) -> tuple[LlmResponse, list[LlmDelta]]:
    """One call on a fresh client and event loop; with `stream`, also the deltas seen."""
    deltas: list[LlmDelta] = []

    async def record(delta: LlmDelta) -> None:
        deltas.append(delta)

    async def call() -> LlmResponse:
        client = make_client(provider, timeout_s)
        try:
            return await client.complete(request, record if stream else None)
        finally:
            await client.aclose()

    return asyncio.run(call()), deltas


def assemble(deltas: list[LlmDelta]) -> tuple[str | None, str | None, tuple[ToolCall, ...]]:
    """Content, reasoning and tool calls as a listener rebuilds them from deltas, checking
    that each tool call's first delta carries its id and name and later ones do not."""
    content = "".join(d.content for d in deltas if d.content) or None
    reasoning = "".join(d.reasoning for d in deltas if d.reasoning) or None
    calls: dict[int, list[str]] = {}
    for delta in deltas:
        if delta.tool_call_index is None:
            continue
        if delta.tool_call_index not in calls:
            assert delta.tool_call_id is not None, delta
            assert delta.tool_name is not None, delta
            calls[delta.tool_call_index] = [delta.tool_call_id, delta.tool_name, ""]
        else:
            assert delta.tool_call_id is None, delta
            assert delta.tool_name is None, delta
        calls[delta.tool_call_index][2] += delta.arguments or ""
    tool_calls = tuple(ToolCall(*calls[index]) for index in sorted(calls))
    return content, reasoning, tool_calls


@dataclasses.dataclass
class FakeClock:
    """A Clock whose sleeps return at once and are recorded, so backoff is observable."""

    now_s: float = 1_000.0
    sleeps_s: list[float] = dataclasses.field(default_factory=list)

    def now_us(self) -> int:
        return int(self.now_s * 1_000_000)

    def monotonic_s(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.sleeps_s.append(seconds)
        self.now_s += seconds

"""Traces (issue 14): one turn with a tool call, driven through the API in process with a
scripted model, exported to the SDK's in-memory exporter as the expected span tree (HTTP
request > turn > steps > model call, tool call, store commits) with its attributes; a
caller's `traceparent` continued; a failing model call marked on its span."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kelpie.api import create_app
from kelpie.cli._env import open_env
from kelpie.env import Config
from kelpie.llm import LlmRateLimited, LlmRequest, LlmResponse, ScriptedProviders, ToolCall, Usage
from kelpie.memory import HASHING_MODEL
from kelpie.obs import TraceAttr, Tracing
from kelpie.service import prepare

MESSAGES_ROUTE = "/v1/agents/{agent_id}/messages"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"

Script = Callable[[LlmRequest], LlmResponse]
Requests = Callable[[httpx.AsyncClient], Awaitable[None]]


def remember_then_reply(request: LlmRequest) -> LlmResponse:
    """First a memory_insert call on the human block; after its return, a reply."""
    if request.messages[-1].role == "tool":
        return LlmResponse("Noted.", (), "stop", Usage(130, 3, 133))
    arguments = json.dumps({"label": "human", "new_string": "Likes tea"})
    call = ToolCall(id="call-tea", name="memory_insert", arguments=arguments)
    return LlmResponse(None, (call,), "tool_calls", Usage(120, 7, 127))


def serve_traced(tmp_path: Path, script: Script, requests: Requests) -> list[ReadableSpan]:
    """Runs `requests` against a fresh app whose model is `script`; the spans it made."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = Config(
        data_dir=tmp_path / "data",
        embedding_model=HASHING_MODEL,
        sandbox_pool_size=0,
        openai_api_key="sk-test",
        otel=False,
    )
    env = dataclasses.replace(
        open_env(config), llm=ScriptedProviders(script), tracing=Tracing(provider)
    )

    async def main() -> None:
        await prepare(env)  # the base tools, as `kelpie serve` does
        transport = httpx.ASGITransport(app=create_app(env))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://kelpie") as http:
                await requests(http)
        finally:
            await env.sandbox.close()
            await env.store.close()

    asyncio.run(main())
    provider.shutdown()
    return list(exporter.get_finished_spans())


async def create_agent(http: httpx.AsyncClient) -> str:
    body = {
        "name": "traced",
        "model": "openai/gpt-4o-mini",
        "memory_blocks": [{"label": "human", "value": "Name: Ada"}],
    }
    response = await http.post("/v1/agents/", json=body)
    assert response.status_code == 200, response.text
    agent_id: str = response.json()["id"]
    return agent_id


def tree(spans: list[ReadableSpan], root: ReadableSpan) -> tuple[str, list[Any]]:
    """`root` and the spans under it, by name, children in start order."""
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == span_id(root)),
        key=lambda s: s.start_time or 0,
    )
    return (root.name, [tree(spans, child) for child in children])


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    found: int = span.context.span_id
    return found


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (found,) = [s for s in spans if s.name == name]
    return found


def test_a_turn_with_a_tool_call_is_one_tree_with_its_attributes(tmp_path: Path) -> None:
    ids: dict[str, str] = {}

    async def requests(http: httpx.AsyncClient) -> None:
        ids["agent"] = await create_agent(http)
        body = {"messages": [{"role": "user", "content": "I like tea"}]}
        response = await http.post(f"/v1/agents/{ids['agent']}/messages", json=body)
        assert response.status_code == 200, response.text
        ids["run"] = response.json()["usage"]["run_ids"][0]

    spans = serve_traced(tmp_path, remember_then_reply, requests)

    request = only(spans, f"POST {MESSAGES_ROUTE}")
    assert request.parent is None
    commit: tuple[str, list[Any]] = ("kelpie.store.commit", [])
    assert tree(spans, request) == (
        f"POST {MESSAGES_ROUTE}",
        [
            (
                "kelpie.turn",
                [
                    (
                        "kelpie.step",
                        [("chat gpt-4o-mini", []), ("execute_tool memory_insert", []), commit],
                    ),
                    ("kelpie.step", [("chat gpt-4o-mini", []), commit]),
                    commit,
                ],
            )
        ],
    )
    # The request, the agent's creation, and nothing else traced apart from them.
    assert {s.name for s in spans if s.parent is None} == {
        f"POST {MESSAGES_ROUTE}",
        "POST /v1/agents",
    }
    turn_spans = [s for s in spans if s.context.trace_id == request.context.trace_id]
    assert len(turn_spans) == 10

    assert request.kind == SpanKind.SERVER
    assert attributes(request) == {
        TraceAttr.HTTP_METHOD: "POST",
        TraceAttr.HTTP_ROUTE: MESSAGES_ROUTE,
        TraceAttr.HTTP_STATUS: 200,
        TraceAttr.AGENT_ID: ids["agent"],
    }
    # Every span of the turn carries its agent and run ids.
    for span in turn_spans:
        if span is not request:
            assert attributes(span)[TraceAttr.AGENT_ID] == ids["agent"], span.name
            assert attributes(span)[TraceAttr.RUN_ID] == ids["run"], span.name

    turn = only(spans, "kelpie.turn")
    assert attributes(turn)[TraceAttr.STOP_REASON] == "end_turn"
    assert attributes(turn)[TraceAttr.STEPS] == 2
    assert attributes(turn)[TraceAttr.AGENT_TYPE] == "letta_v1_agent"

    steps = [s for s in spans if s.name == "kelpie.step"]
    step_ids = [attributes(s)[TraceAttr.STEP_ID] for s in steps]
    assert all(str(step).startswith("step-") for step in step_ids)
    assert len(set(step_ids)) == 2

    first, second = sorted(
        (s for s in spans if s.name == "chat gpt-4o-mini"), key=lambda s: s.start_time or 0
    )
    assert first.kind == SpanKind.CLIENT
    for call, tokens in ((first, (120, 7)), (second, (130, 3))):
        found = attributes(call)
        assert found[TraceAttr.GENAI_OPERATION] == "chat"
        assert found[TraceAttr.GENAI_PROVIDER] == "openai"
        assert found[TraceAttr.GENAI_MODEL] == "gpt-4o-mini"
        assert (found[TraceAttr.GENAI_INPUT_TOKENS], found[TraceAttr.GENAI_OUTPUT_TOKENS]) == tokens
    assert attributes(first)[TraceAttr.GENAI_FINISH_REASONS] == ("tool_calls",)

    tool = attributes(only(spans, "execute_tool memory_insert"))
    assert tool[TraceAttr.GENAI_TOOL_NAME] == "memory_insert"
    assert tool[TraceAttr.GENAI_TOOL_CALL_ID] == "call-tea"
    assert tool[TraceAttr.TOOL_TYPE] == "letta_sleeptime_core"
    assert tool[TraceAttr.TOOL_OK] is True

    commits = [attributes(s) for s in spans if s.name == "kelpie.store.commit"]
    assert [c[TraceAttr.COMMIT_FINAL] for c in commits] == [False, False, True]
    assert all(s.status.status_code == StatusCode.UNSET for s in turn_spans)
    assert all(s.end_time is not None for s in spans)


def test_a_callers_traceparent_is_continued(tmp_path: Path) -> None:
    async def requests(http: httpx.AsyncClient) -> None:
        traceparent = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
        response = await http.get("/v1/agents/", headers={"traceparent": traceparent})
        assert response.status_code == 200

    (span,) = serve_traced(tmp_path, remember_then_reply, requests)

    assert span.name == "GET /v1/agents"
    assert span.context is not None
    assert span.parent is not None
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == CALLER_SPAN_ID
    assert span.parent.is_remote


def test_a_failed_model_call_and_its_turn_are_marked(tmp_path: Path) -> None:
    def failing(request: LlmRequest) -> LlmResponse:
        raise LlmRateLimited("slow down", retryable=False)

    async def requests(http: httpx.AsyncClient) -> None:
        agent_id = await create_agent(http)
        body = {"messages": [{"role": "user", "content": "Hi"}]}
        await http.post(f"/v1/agents/{agent_id}/messages", json=body)

    spans = serve_traced(tmp_path, failing, requests)

    call = only(spans, "chat gpt-4o-mini")
    assert call.status.status_code == StatusCode.ERROR
    assert attributes(call)[TraceAttr.ERROR_TYPE] == "llm_rate_limit"
    assert [event.name for event in call.events] == ["exception"]
    turn = only(spans, "kelpie.turn")
    assert turn.status.status_code == StatusCode.ERROR
    assert attributes(turn)[TraceAttr.STOP_REASON] == "llm_api_error"


def test_scrapes_of_metrics_are_not_traced(tmp_path: Path) -> None:
    async def requests(http: httpx.AsyncClient) -> None:
        assert (await http.get("/metrics")).status_code == 200

    assert serve_traced(tmp_path, remember_then_reply, requests) == []


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"KELPIE_OTEL": "1"}, True),
        ({"KELPIE_OTEL": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ],
)
def test_what_turns_tracing_on(environ: dict[str, str], expected: bool) -> None:
    assert Config.from_environ(environ).tracing_on(environ) is expected

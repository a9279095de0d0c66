"""Tracing (kelpie.obs): off, it records nothing and hands out one shared do-nothing span;
on, spans nest through the current context, hand their agent and run ids down, and mark
failures; asked for without the `otel` extra, start-up stops saying what to install."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from kelpie.cli._env import open_env
from kelpie.env import Config
from kelpie.memory import HASHING_MODEL
from kelpie.obs import TraceAttr, Tracing


def recording() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracing(provider), exporter


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_off_by_default_with_one_shared_span_that_does_nothing() -> None:
    tracing = Tracing()

    with tracing.turn("agent-1", "run-1", "letta_v1_agent") as turn, tracing.step() as step:
        step.set_attribute("x", 1)
        step.fail("nope")
        tracing.annotate(TraceAttr.STEP_ID, "step-1")

    assert tracing.enabled is False
    assert turn is step
    assert tracing.llm_call("openai", "m") is tracing.tool_call("t", "custom", "c")
    tracing.close()


def test_spans_nest_and_inherit_the_turns_ids() -> None:
    tracing, exporter = recording()

    async def turn() -> None:
        with tracing.turn("agent-1", "run-1", "letta_v1_agent"), tracing.step():
            tracing.annotate(TraceAttr.STEP_ID, "step-1")
            # Tool calls of one step run concurrently, each in a task of its own.
            calls = [asyncio.ensure_future(tool(name)) for name in ("a", "b")]
            await asyncio.gather(*calls)

    async def tool(name: str) -> None:
        with tracing.tool_call(name, "custom", f"call-{name}"):
            await asyncio.sleep(0)

    asyncio.run(turn())
    with tracing.llm_call("openai", "outside"):
        pass

    spans = by_name(exporter)
    turn_span, step = spans["kelpie.turn"], spans["kelpie.step"]
    assert step.parent is not None
    assert turn_span.context is not None
    assert step.parent.span_id == turn_span.context.span_id
    assert step.attributes is not None
    assert step.attributes[TraceAttr.STEP_ID] == "step-1"
    for name in ("a", "b"):
        call = spans[f"execute_tool {name}"]
        assert call.parent is not None
        assert step.context is not None
        assert call.parent.span_id == step.context.span_id
        assert call.attributes is not None
        assert call.attributes[TraceAttr.AGENT_ID] == "agent-1"
        assert call.attributes[TraceAttr.RUN_ID] == "run-1"
    # Once the turn is over its ids are not handed to unrelated spans.
    outside = spans["chat outside"]
    assert outside.parent is None
    assert outside.attributes is not None
    assert TraceAttr.AGENT_ID not in outside.attributes


def test_an_exception_marks_its_span_and_is_recorded() -> None:
    tracing, exporter = recording()

    with pytest.raises(KeyError), tracing.step():
        raise KeyError("lost")

    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes[TraceAttr.ERROR_TYPE] == "KeyError"
    assert [event.name for event in span.events] == ["exception"]


def test_a_named_failure_wins_over_the_exceptions_type() -> None:
    tracing, exporter = recording()

    def cancelled_call() -> None:
        with tracing.llm_call("openai", "m") as span:
            span.fail("cancelled")
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        cancelled_call()

    (done,) = exporter.get_finished_spans()
    assert done.status.status_code == StatusCode.ERROR
    assert done.attributes is not None
    assert done.attributes[TraceAttr.ERROR_TYPE] == "cancelled"
    assert done.events == ()  # no traceback for a cancellation


def test_asked_for_without_the_extra_start_up_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes an import fail as a missing package does.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    config = Config(data_dir=tmp_path / "data", otel=True)

    with pytest.raises(SystemExit) as stopped:
        open_env(config, environ={})

    assert "pip install 'kelpie[otel]'" in str(stopped.value.code)
    assert not (tmp_path / "data").exists()  # nothing opened before the check


def test_an_otlp_endpoint_turns_it_on_with_the_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_global: list[object] = []
    monkeypatch.setattr("opentelemetry.trace.set_tracer_provider", set_global.append)
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kelpie-test")

    config = Config(data_dir=tmp_path / "data", sandbox_pool_size=0, embedding_model=HASHING_MODEL)
    env = open_env(config, environ=environ)
    try:
        assert env.tracing.enabled
        (provider,) = set_global
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "kelpie-test"
    finally:
        env.tracing.close()
        asyncio.run(env.store.close())

"""The host's side of code mode (`CodeCalls`): which calls that code sends over its channel
are made, and how. The channel is the capability: whatever the code forges, the host decides
which agent a call acts for and which of its tools exist."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import types
from typing import Any, cast

from kelpie.llm import ToolCall
from kelpie.schemas import Tool
from kelpie.tools import CodeResume, ToolOutcome, ToolSession
from kelpie.tools._run_code import TOOL_CALLS_PER_EXECUTION_MAX, CodeCalls, code_tools

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def _tool(name: str, properties: dict[str, Any]) -> Tool:
    return Tool(
        id=f"tool-00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
        name=name,
        tool_type="custom",
        json_schema={"name": name, "parameters": {"type": "object", "properties": properties}},
        created_at=NOW,
        updated_at=NOW,
    )


def _session(**fields: Any) -> ToolSession:
    tools = {
        name: _tool(name, {"x": {"type": "string"}, "request_heartbeat": {"type": "boolean"}})
        for name in ("lookup", "guarded", "send_message", "run_code_with_tools")
    }
    defaults: dict[str, Any] = {
        "tools": tools,
        "terminal": frozenset({"send_message"}),
        "needs_approval": frozenset({"guarded"}),
        "max_count": {},
        "called": [],
    }
    return cast(ToolSession, types.SimpleNamespace(**{**defaults, **fields}))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ToolCall]] = []

    async def __call__(self, session: Any, call: ToolCall, tool: Tool | None) -> ToolOutcome:
        self.calls.append((session, call))
        return ToolOutcome(f"ran {call.name}", True, json.loads(call.arguments), value=[1, 2])


def _call(calls: CodeCalls, name: str, arguments: dict[str, Any]) -> tuple[bool, Any]:
    answer = asyncio.run(calls(name, arguments))
    return answer.ok, answer.value


def test_code_sees_the_agents_tools_but_not_terminal_or_code_tools() -> None:
    stubs = code_tools(_session())
    assert [(stub.name, stub.parameters) for stub in stubs] == [
        ("guarded", ("x",)),
        ("lookup", ("x",)),
    ]


def test_a_call_runs_for_the_session_under_the_calling_tools_id() -> None:
    session, recorder = _session(), Recorder()
    calls = CodeCalls(session, recorder, "call-parent")

    assert _call(calls, "lookup", {"x": "kelp"}) == (True, [1, 2])

    [(seen_session, call)] = recorder.calls
    assert seen_session is session
    assert (call.id, call.name) == ("call-parent", "lookup")
    assert json.loads(call.arguments) == {"x": "kelp"}
    assert session.called == ["lookup"]


def test_a_forged_name_or_another_agents_tool_is_not_made() -> None:
    recorder = Recorder()
    calls = CodeCalls(_session(), recorder, "call-1")
    for name in ("delete_agent", "other_agents_tool", "send_message", "run_code_with_tools"):
        ok, value = _call(calls, name, {})
        assert ok is False
        assert value == f"Tool '{name}' is not available to this agent's code"
    assert recorder.calls == []


class TestACallThatNeedsApproval:
    def test_stops_the_code_there_keeping_the_answers_before_it(self) -> None:
        recorder = Recorder()
        calls = CodeCalls(_session(), recorder, "call-1")
        assert _call(calls, "lookup", {"x": "a"}) == (True, [1, 2])

        answer = asyncio.run(calls("guarded", {"x": "b"}))

        assert (answer.ok, answer.stop) == (False, True)
        assert calls.waiting == ("guarded", {"x": "b"})
        assert [(a.name, a.arguments, a.ok, a.value) for a in calls.answers] == [
            ("lookup", {"x": "a"}, True, [1, 2])
        ]
        # Whatever the stopped code still tries is refused, and stops it again.
        assert asyncio.run(calls("lookup", {"x": "c"})).stop
        assert [call.name for _, call in recorder.calls] == ["lookup"]

    def test_running_again_replays_the_answers_and_runs_the_approved_call(self) -> None:
        first = CodeCalls(_session(), Recorder(), "call-1")
        _call(first, "lookup", {"x": "a"})
        asyncio.run(first("guarded", {"x": "b"}))
        recorder = Recorder()
        resume = CodeResume(answers=first.answers, waiting=("guarded", {"x": "b"}), reply=None)
        again = CodeCalls(_session(), recorder, "call-1", resume)

        assert _call(again, "lookup", {"x": "a"}) == (True, [1, 2])
        assert recorder.calls == [], "an answered call is replayed, not made twice"
        assert _call(again, "guarded", {"x": "b"}) == (True, [1, 2])
        assert _call(again, "lookup", {"x": "after"}) == (True, [1, 2])
        assert [call.name for _, call in recorder.calls] == ["guarded", "lookup"]

    def test_a_denial_is_the_answer_the_code_gets(self) -> None:
        recorder = Recorder()
        resume = CodeResume(answers=[], waiting=("guarded", {}), reply=(False, "denied: no"))
        calls = CodeCalls(_session(), recorder, "call-1", resume)

        assert _call(calls, "guarded", {}) == (False, "denied: no")
        assert recorder.calls == []

    def test_code_that_calls_differently_when_run_again_is_stopped(self) -> None:
        resume = CodeResume(answers=[], waiting=("guarded", {"x": "b"}), reply=None)
        calls = CodeCalls(_session(), Recorder(), "call-1", resume)

        answer = asyncio.run(calls("guarded", {"x": "other"}))

        assert answer.stop
        assert calls.diverged is not None
        assert "must make the same tool calls in the same order" in calls.diverged


def test_arguments_the_server_supplies_cannot_be_forged() -> None:
    recorder = Recorder()
    calls = CodeCalls(_session(), recorder, "call-1")
    assert _call(calls, "lookup", {"agent_state": {"id": "agent-other"}}) == (
        False,
        "'agent_state' is supplied by the server",
    )
    assert recorder.calls == []


def test_per_step_limits_count_earlier_direct_calls() -> None:
    recorder = Recorder()
    session = _session(max_count={"lookup": 2}, called=["lookup"])
    calls = CodeCalls(session, recorder, "call-1")
    assert _call(calls, "lookup", {})[0] is True
    assert _call(calls, "lookup", {}) == (False, "Tool 'lookup' may be called 2 times per step")
    assert len(recorder.calls) == 1


def test_an_execution_makes_at_most_its_limit_of_calls() -> None:
    recorder = Recorder()
    calls = CodeCalls(_session(), recorder, "call-1")

    async def many() -> list[bool]:
        return [(await calls("lookup", {})).ok for _ in range(TOOL_CALLS_PER_EXECUTION_MAX + 1)]

    results = asyncio.run(many())
    assert results.count(True) == TOOL_CALLS_PER_EXECUTION_MAX
    assert results[-1] is False

"""Code mode under simulation: the model's code step, the simulated sandbox replaying the
code's tool calls (a crash between two of them), the checks of what the code left in the
journal, and runs that drive it all (the planted double call is caught in
tests/sim/test_harness.py, with the other planted sandbox bugs)."""

import asyncio
import json
from collections.abc import Callable
from typing import Any, Final

import pytest

import kelpie.sim._streams
import kelpie.sim._workload
from kelpie.env import Entropy
from kelpie.llm import ChatMessage, LlmRequest, LlmResponse, ToolSpec
from kelpie.sandbox import HostCallAnswer, SandboxLimits, ToolJob, ToolJobResult, ToolStub
from kelpie.schemas import LlmConfig
from kelpie.sim import FaultPlan, SimClock, run_seed, run_simulation, running_sim_loop
from kelpie.sim._checks import InvariantBroken, check_journal
from kelpie.sim._llm import (
    CODE_TOOL,
    JOURNAL_LABEL,
    LlmFaultInjector,
    SimModel,
    code_call_id,
    code_source,
    code_tokens,
)
from kelpie.sim._memory_checks import check_journal_history
from kelpie.sim._model import AgentModel, BlockModel, CodeCallModel, Known
from kelpie.sim._planted import CodeCallTwice
from kelpie.sim._sandbox import CRASH_ERROR, SandboxFaultInjector, SimSandbox
from kelpie.sim._sessions import SessionWorld
from kelpie.sim._workload_code import check_code_return, check_session_runs, expect_code_call

CONFIG: Final = LlmConfig(model="sim", model_endpoint_type="openai", context_window=8000)
TOOLS: Final = tuple(
    ToolSpec(name=name, description="", parameters={})
    for name in (CODE_TOOL, "memory_insert", "tool_c0_1")
)
MEMORY_INSERT: Final = ToolStub(name="memory_insert", parameters=("label", "new_string"))


def _answer(*messages: ChatMessage) -> LlmResponse:
    model = SimModel(LlmFaultInjector(FaultPlan(), Entropy(1)))
    return asyncio.run(model.complete(LlmRequest(CONFIG, messages, TOOLS)))


class TestTheModel:
    def test_asked_for_code_it_first_runs_one_snippet_then_goes_on_as_any_turn(self) -> None:
        user = ChatMessage(role="user", content="record token:c0t1 calls:1 mcp:0 code:3")

        first = _answer(user)

        [call] = first.tool_calls
        assert (call.id, call.name) == ("code-c0t1", CODE_TOOL)
        assert json.loads(call.arguments) == {"code": code_source(("c0t1k0", "c0t1k1", "c0t1k2"))}
        returned = ChatMessage(role="tool", content="{}", tool_call_id=call.id)
        second = _answer(user, ChatMessage(role="assistant", tool_calls=(call,)), returned)
        assert [(c.id, c.name) for c in second.tool_calls] == [
            ("call-c0t1", "memory_insert"),
            ("call-c0t1x0", "tool_c0_1"),
        ]
        memory_return = ChatMessage(role="tool", content="ok", tool_call_id="call-c0t1")
        assert _answer(user, returned, memory_return).content == "noted"

    def test_without_the_code_tool_the_turn_is_as_before(self) -> None:
        user = ChatMessage(role="user", content="record token:c0t1 calls:0 mcp:0 code:3")
        model = SimModel(LlmFaultInjector(FaultPlan(), Entropy(1)))
        request = LlmRequest(CONFIG, (user,), TOOLS[1:])
        answer = asyncio.run(model.complete(request))
        assert [c.id for c in answer.tool_calls] == ["call-c0t1"]


def _run_code(
    sandbox_class: type[SimSandbox], plan: FaultPlan, seed: int
) -> tuple[ToolJobResult, list[str]]:
    """Runs a code step's snippet for three tokens; its result and the lines the host got."""
    received: list[str] = []

    async def host(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        assert (name, arguments["label"], arguments["insert_line"]) == (
            "memory_insert",
            JOURNAL_LABEL,
            -1,
        )
        received.append(arguments["new_string"])
        return HostCallAnswer(True, None)

    async def main() -> ToolJobResult:
        clock = SimClock(running_sim_loop())
        faults = SandboxFaultInjector(plan, Entropy(seed))
        sandbox = sandbox_class(clock, faults, pool_size=1)
        job = ToolJob(
            source_code=code_source(code_tokens("t", 3)),
            function_name=None,
            tools=(MEMORY_INSERT,),
            limits=SandboxLimits(timeout_s=5.0),
        )
        try:
            return await sandbox.run(job, host)
        finally:
            await sandbox.close()

    return run_simulation(main, seed=seed), received


class TestTheSandbox:
    def test_the_code_calls_the_host_once_per_token_in_order(self) -> None:
        result, received = _run_code(SimSandbox, FaultPlan(), 1)
        assert result.status == "success"
        assert received == ["tk0", "tk1", "tk2"]

    def test_a_crash_leaves_the_calls_made_before_it(self) -> None:
        reached = set()
        for seed in range(1, 30):
            result, received = _run_code(SimSandbox, FaultPlan(sandbox_crash=1.0), seed)
            assert result.error == CRASH_ERROR
            assert received == ["tk0", "tk1", "tk2"][: len(received)]
            reached.add(len(received))
        assert reached == {0, 1, 2, 3}

    def test_the_planted_sandbox_sends_the_first_call_twice(self) -> None:
        _, received = _run_code(CodeCallTwice, FaultPlan(), 1)
        assert received == ["tk0", "tk0", "tk1", "tk2"]


def _journal(*calls: tuple[str, int]) -> BlockModel:
    journal = BlockModel(
        id="j", label=JOURNAL_LABEL, limit=1000, exists=Known(True), value=Known(""), journal=True
    )
    for token, count in calls:
        journal.tokens_maybe.add(token)
        expect_code_call(journal, token, count, None, "a")
    return journal


def _return(call_id: str, status: str, func_return: Any = None) -> dict[str, Any]:
    stdout = ["runs 1\n"] if status == "success" else []
    body = {"status": status, "func_return": func_return, "stdout": stdout, "stderr": []}
    return {
        "message_type": "tool_return_message",
        "tool_call_id": call_id,
        "status": status,
        "tool_return": json.dumps(body),
    }


def _agent() -> AgentModel:
    return AgentModel(
        id="a",
        exists=Known(True),
        name=Known("n"),
        tags=Known(()),
        block_ids=Known(()),
        code_tools=True,
    )


class TestTheChecks:
    @pytest.mark.parametrize(
        "value",
        ["", "tk0", "tk0\ntk1", "tk0\ntk1\ntk2\nt", "t\ntk0\ntk1\ntk2"],
    )
    def test_a_crashed_call_may_leave_any_prefix(self, value: str) -> None:
        journal, agent = _journal(("t", 3)), _agent()
        check_code_return(
            "turn", journal, agent, "t", 3, [_return("code-t", "error", CRASH_ERROR)],
            ("sandbox_crash",), complete=True, sessions=None,
        )  # fmt: skip
        check_journal(journal, value)
        assert agent.custom_returns == {"code-t": "error"}

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("tk1", "not a prefix"),
            ("tk0\ntk2", "not a prefix"),
            ("tk1\ntk0", "not a prefix"),
            ("tk0\nt\ntk1", "not a prefix"),
            ("tk0\ntk0\ntk1", "more than once"),
        ],
    )
    def test_lines_the_code_did_not_reach_or_made_twice_are_caught(
        self, value: str, problem: str
    ) -> None:
        with pytest.raises(InvariantBroken, match=f"code call code-t .*{problem}"):
            check_journal(_journal(("t", 3)), value)

    def test_a_success_must_have_left_every_line(self) -> None:
        journal, agent = _journal(("t", 3)), _agent()
        check_code_return(
            "turn",
            journal,
            agent,
            "t",
            3,
            [_return("code-t", "success")],
            (),
            complete=True,
            sessions=None,
        )
        check_journal(journal, "tk0\ntk1\ntk2")
        with pytest.raises(InvariantBroken, match="returned success but left only"):
            check_journal(journal, "tk0\ntk1")

    @pytest.mark.parametrize(
        ("item", "faults", "problem"),
        [
            (_return("code-t", "error", CRASH_ERROR), (), "with no sandbox fault"),
            (_return("code-t", "error", "ToolError: x"), ("sandbox_crash",), "failed with"),
            (_return("code-t", "success", 5), (), "returned"),
            ({**_return("code-t", "success"), "tool_return": "ok"}, (), "returned"),
        ],
    )
    def test_a_return_code_mode_does_not_give_is_caught(
        self, item: dict[str, Any], faults: tuple[str, ...], problem: str
    ) -> None:
        with pytest.raises(InvariantBroken, match=problem):
            check_code_return(
                "turn",
                _journal(("t", 3)),
                _agent(),
                "t",
                3,
                [item],
                faults,
                complete=True,
                sessions=None,
            )

    def test_a_turn_with_no_fault_must_have_run_its_code(self) -> None:
        with pytest.raises(InvariantBroken, match="has no tool return"):
            check_code_return(
                "turn", _journal(("t", 2)), _agent(), "t", 2, [], (), complete=True, sessions=None
            )
        journal = _journal(("t", 2))
        check_code_return(
            "turn", journal, _agent(), "t", 2, [], ("llm_error",), complete=True, sessions=None
        )
        assert journal.tokens_maybe == {"t"}  # the code's step never committed

    def test_a_session_that_was_never_lost_only_counts_up(self) -> None:
        world, agent = SessionWorld(), _agent()
        for runs in (1, 2, 4):  # a run whose answer was lost may come between
            check_session_runs("turn", agent, CodeCallModel(()), [f"runs {runs}\n"], world)
        with pytest.raises(InvariantBroken, match="the session was never lost"):
            check_session_runs("turn", agent, CodeCallModel(()), ["runs 1\n"], world)

    def test_after_a_loss_a_session_may_start_again(self) -> None:
        world, agent = SessionWorld(), _agent()
        check_session_runs("turn", agent, CodeCallModel(()), ["runs 3\n"], world)
        world.losses[agent.id] += 1
        sent = CodeCallModel((), losses_at_send=1)
        check_session_runs("turn", agent, sent, ["runs 1\n"], world)
        with pytest.raises(InvariantBroken, match="printed"):
            check_session_runs("turn", agent, sent, ["nothing\n"], world)

    def test_the_history_names_the_code_call_for_its_lines(self) -> None:
        journal = _journal(("t", 2))
        entries, old = [], ""
        for seq, (line, call_id) in enumerate(
            [("t", "call-t"), ("tk0", "code-t"), ("tk1", "code-t")], start=1
        ):
            new = f"{old}\n{line}" if old else line
            version = {"label": JOURNAL_LABEL, "description": None, "limit": 1000}
            entries.append(
                {
                    "seq": seq,
                    "source": "tool",
                    "tool_call_id": call_id,
                    "old": {**version, "value": old},
                    "new": {**version, "value": new},
                }
            )
            old = new
        check_journal_history(journal, entries, old)
        entries[1]["tool_call_id"] = "call-tk0"
        with pytest.raises(InvariantBroken, match="names call call-tk0"):
            check_journal_history(journal, entries, old)


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the code returns the workload checks, by status ('none': no return)."""
    seen: dict[str, int] = {}
    checked: Callable[..., None] = check_code_return

    def counting(*args: Any, **kwargs: Any) -> None:
        _, _, _, token, count, items = args[:6]
        if count:
            statuses = [
                item["status"]
                for item in items
                if item.get("message_type") == "tool_return_message"
                and item["tool_call_id"] == code_call_id(token)
            ]
            for status in statuses or ["none"]:
                seen[status] = seen.get(status, 0) + 1
        checked(*args, **kwargs)

    monkeypatch.setattr(kelpie.sim._workload, "check_code_return", counting)
    monkeypatch.setattr(kelpie.sim._streams, "check_code_return", counting)
    return seen


def test_code_turns_under_sandbox_faults_and_crashes_keep_every_invariant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _counting(monkeypatch)
    plan = FaultPlan(
        sandbox_crash=0.3, sandbox_timeout=0.05, storage_write_failure=0.02, crash=0.02
    )
    for seed in (5, 6, 8):
        result = run_seed(seed, steps=100, plan=plan)
        assert result.ok, f"seed {seed}: {result.failure}"
    assert seen.get("success", 0) > 0, seen
    assert seen.get("error", 0) > 0, seen


def test_code_runs_that_pass_are_the_same_runs_again() -> None:
    # Code turns are part of the trace: the same seed gives the same hash.
    plan = FaultPlan(sandbox_crash=0.3)
    first, second = run_seed(8, steps=60, plan=plan), run_seed(8, steps=60, plan=plan)
    assert first.ok, first.failure
    assert first.trace_hash == second.trace_hash

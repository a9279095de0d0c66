"""The simulated sandbox: tools run in process, faults injected from the seed in virtual
time, a warm pool that replaces the workers it loses, and `agent_state` given back."""

import asyncio
from typing import Any

import pytest

from kelpie.env import Entropy
from kelpie.sandbox import SandboxLimits, ToolJob, ToolJobResult
from kelpie.sim import FaultPlan, SimClock, run_simulation, running_sim_loop
from kelpie.sim._faults import SANDBOX_SLOW_START_S_MAX
from kelpie.sim._sandbox import (
    CRASH_ERROR,
    WORKER_START_S,
    SandboxFaultInjector,
    SimSandbox,
    timeout_error,
)
from kelpie.sim._store import RequestFaults, current_request
from kelpie.sim._workload_tools import tool_source

POOL_SIZE = 2


def _job(*, state: bool = False, timeout_s: float = 7.0) -> ToolJob:
    name = "tool_c0_1"
    agent_state: dict[str, Any] | None = None
    if state:
        block = {"id": "block-1", "label": "journal", "value": "a", "limit": 100}
        agent_state = {
            "id": "agent-1",
            "name": "n",
            "description": None,
            "tags": [],
            "metadata": {},
            "agent_type": "letta_v1_agent",
            "memory": {"blocks": [{**block, "description": None, "read_only": False}]},
        }
    return ToolJob(
        source_code=tool_source(name, takes_state=state),
        function_name=name,
        arguments={"city": "b", "days": 2},
        agent_state=agent_state,
        limits=SandboxLimits(timeout_s=timeout_s),
    )


def _run(plan: FaultPlan, job: ToolJob) -> tuple[ToolJobResult, float, list[str], list[str]]:
    """Runs one job on a started pool: its result, the virtual time it took, the faults
    recorded for the request, and the pool's state once quiet."""

    async def main() -> tuple[ToolJobResult, float, list[str], list[str]]:
        clock = SimClock(running_sim_loop())
        faults = SandboxFaultInjector(plan, Entropy(1))
        sandbox = SimSandbox(clock, faults, pool_size=POOL_SIZE)
        await sandbox.start()
        await clock.sleep(2 * WORKER_START_S)
        assert sandbox.warm == POOL_SIZE
        request = RequestFaults()
        token = current_request.set(request)
        try:
            started = clock.monotonic_s()
            result = await sandbox.run(job)
            took = clock.monotonic_s() - started
        finally:
            current_request.reset(token)
        after = [sandbox.describe()]
        await clock.sleep(2 * WORKER_START_S)
        after.append(sandbox.describe())
        assert sandbox.pool_consistent()
        await sandbox.close()
        return result, took, request.kinds, after

    return run_simulation(main, seed=1)


def test_a_tool_runs_its_source_and_returns_its_value() -> None:
    result, took, kinds, _ = _run(FaultPlan(), _job())
    assert result == ToolJobResult(status="success", func_return="b:2")
    assert took == 0.0
    assert kinds == []


def test_agent_state_edits_come_back_as_json() -> None:
    result, _, _, _ = _run(FaultPlan(), _job(state=True))
    assert result.status == "success"
    assert result.func_return == "b:2"
    assert result.agent_state is not None
    blocks: list[dict[str, Any]] = result.agent_state["memory"]["blocks"]
    assert [block["value"] for block in blocks] == ["a\nb"]
    assert result.agent_state["id"] == "agent-1"


def test_a_crash_is_the_killed_worker_error_and_the_pool_replaces_it() -> None:
    result, _, kinds, after = _run(FaultPlan(sandbox_crash=1.0), _job())
    assert result.status == "error"
    assert result.error == CRASH_ERROR
    assert kinds == ["sandbox_crash"]
    assert after == [
        "size=2 warm=1 busy=0 starting=1 calls running=0",
        "size=2 warm=2 busy=0 starting=0 calls running=0",
    ]


def test_a_timeout_waits_the_jobs_timeout_in_virtual_time() -> None:
    result, took, kinds, after = _run(FaultPlan(sandbox_timeout=1.0), _job(timeout_s=7.0))
    assert result.status == "error"
    assert result.error == timeout_error(7.0) == "Tool timed out after 7.0 s"
    assert took == pytest.approx(7.0)
    assert kinds == ["sandbox_timeout"]
    assert after[-1] == "size=2 warm=2 busy=0 starting=0 calls running=0"


def test_a_slow_start_delays_the_call_and_then_runs_it() -> None:
    result, took, kinds, after = _run(FaultPlan(sandbox_slow_start=1.0), _job())
    assert result.func_return == "b:2"
    assert 0.0 <= took <= SANDBOX_SLOW_START_S_MAX
    assert kinds == ["sandbox_slow_start"]
    assert after[0] == "size=2 warm=2 busy=0 starting=0 calls running=0"


def test_calls_beyond_the_pool_start_cold_workers() -> None:
    async def main() -> tuple[list[str], float, str]:
        clock = SimClock(running_sim_loop())
        # Slow starts keep the first call on its worker while the second one arrives.
        plan = FaultPlan(sandbox_slow_start=1.0)
        sandbox = SimSandbox(clock, SandboxFaultInjector(plan, Entropy(1)), pool_size=1)
        await sandbox.start()
        await clock.sleep(2 * WORKER_START_S)
        started = clock.monotonic_s()
        results = await asyncio.gather(sandbox.run(_job()), sandbox.run(_job()))
        took = clock.monotonic_s() - started
        await sandbox.close()
        return [str(r.func_return) for r in results], took, sandbox.describe()

    values, took, pool = run_simulation(main, seed=2)
    assert values == ["b:2", "b:2"]
    assert took >= WORKER_START_S  # the cold worker's start
    assert pool == "size=1 warm=1 busy=0 starting=0 calls running=0"


def test_sandbox_fault_draws_are_a_function_of_the_seed() -> None:
    plan = FaultPlan(sandbox_crash=0.1, sandbox_timeout=0.1, sandbox_slow_start=0.1)

    def draws(seed: int) -> list[tuple[str | None, float]]:
        injector = SandboxFaultInjector(plan, Entropy(seed))
        return [injector.draw() for _ in range(500)]

    assert draws(4) == draws(4)
    kinds = [kind for kind, _ in draws(4)]
    assert 20 < kinds.count("sandbox_crash") < 80
    assert {"sandbox_timeout", "sandbox_slow_start", None} < set(kinds)

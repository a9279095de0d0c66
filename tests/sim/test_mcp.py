"""The simulated MCP servers: deterministic tools, a kept connection, faults injected from
the seed in virtual time; and the workload's MCP invariants catching the planted bugs."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import pytest

from kelpie.env import Entropy
from kelpie.mcp import MCP_CONNECT_TIMEOUT_S, McpCallResult, McpServerSpec, McpUnavailable
from kelpie.sim import FaultPlan, SimClock, run_seed, run_simulation, running_sim_loop
from kelpie.sim._mcp import (
    CRASH_MARK,
    MCP_CALL_S,
    MCP_START_S,
    SLOW_START_MARK,
    TIMEOUT_MARK,
    McpFaultInjector,
    SimMcp,
    mcp_call_arguments,
    mcp_result,
    server_prefix,
    sim_mcp_config,
)
from kelpie.sim._planted import PLANTED_MCP_BUGS, McpNeverReconnects
from kelpie.sim._store import RequestFaults, current_request

T = TypeVar("T")
SEEDS_TO_CATCH_PLANTED_BUG_MAX: Final = 20
PLANTED_MCP_BUG_SUBJECTS: Final = {
    "mcp_never_reconnects": "MCP call",
    "mcp_connect_per_call": "mcp connections",
}
SPEC: Final = McpServerSpec(
    key="mcp_server-1", name="mcp_c0_1", transport="stdio", command="sim-mcp", args=("mcp_c0_1",)
)


def _simulate(
    plan: FaultPlan,
    body: Callable[[SimMcp, SimClock], Awaitable[T]],
    *,
    mcp_class: type[SimMcp] = SimMcp,
) -> tuple[T, list[str]]:
    """Runs `body` against a fresh SimMcp; its result and the faults recorded for it."""

    async def main() -> tuple[T, list[str]]:
        clock = SimClock(running_sim_loop())
        mcp = mcp_class(clock, McpFaultInjector(plan, Entropy(1)))
        request = RequestFaults()
        token = current_request.set(request)
        try:
            return await body(mcp, clock), request.kinds
        finally:
            current_request.reset(token)
            await mcp.close()

    return run_simulation(main, seed=1)


async def _call(mcp: SimMcp, tool: str = "mcp_c0_1_add", **arguments: object) -> McpCallResult:
    return await mcp.call_tool(SPEC, tool, arguments or {"a": 2, "b": 3}, timeout_s=7.0)


def test_specs_name_simulated_servers() -> None:
    assert server_prefix(SPEC) == "mcp_c0_1"
    remote = McpServerSpec(key="k", name="n", transport="sse", url="http://mcp.sim/mcp_x")
    assert server_prefix(remote) == "mcp_x"
    assert server_prefix(McpServerSpec(key="k", name="n", transport="stdio", command="npx")) is None
    assert sim_mcp_config("p") == {"mcp_server_type": "stdio", "command": "sim-mcp", "args": ["p"]}


def test_tools_list_and_answer_deterministically() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> tuple[list[str], list[McpCallResult], float]:
        names = [tool.name for tool in await mcp.list_tools(SPEC)]
        started = clock.monotonic_s()
        results = [
            await _call(mcp),
            await _call(mcp, "mcp_c0_1_lookup", key="k1"),
            await _call(mcp, "mcp_c0_1_check", n=3),
            await _call(mcp, "mcp_c0_1_check", n=4),
        ]
        return names, results, clock.monotonic_s() - started

    (names, results, took), kinds = _simulate(FaultPlan(), body)
    assert names == ["mcp_c0_1_add", "mcp_c0_1_check", "mcp_c0_1_lookup"]
    assert results == [
        McpCallResult(text="5"),
        McpCallResult(text="value-of-k1"),
        McpCallResult(text="check failed: 3 is odd", is_error=True),
        McpCallResult(text="4 is even"),
    ]
    assert took == pytest.approx(4 * MCP_CALL_S)
    assert kinds == []
    assert mcp_result("lookup", mcp_call_arguments("lookup", "c0t1", 2)).text == "value-of-c0t1k2"


def test_the_connection_is_made_once_lazily_and_reused() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> tuple[float, str]:
        started = clock.monotonic_s()
        await asyncio.gather(_call(mcp), _call(mcp), _call(mcp))  # one shared connect
        await _call(mcp)
        return clock.monotonic_s() - started, mcp.describe()

    (took, counts), _ = _simulate(FaultPlan(), body)
    assert took == pytest.approx(MCP_START_S + 2 * MCP_CALL_S)
    assert counts == "mcp_server-1: connects=1 losses=0 calls=4"


def test_an_unknown_command_is_unavailable_and_never_connects() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> str:
        spec = McpServerSpec(key="k", name="gone", transport="stdio", command="no-such-server")
        with pytest.raises(McpUnavailable, match="was not found on its PATH"):
            await mcp.list_tools(spec)
        return mcp.describe()

    counts, kinds = _simulate(FaultPlan(), body)
    assert counts == ""
    assert kinds == []


def test_a_crash_fails_the_call_and_the_next_call_reconnects() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> tuple[str, McpCallResult, str]:
        with pytest.raises(McpUnavailable) as crashed:
            await _call(mcp)
        mcp._faults.plan = FaultPlan()  # the next call: no fault
        return str(crashed.value), await _call(mcp), mcp.describe()

    (error, after, counts), kinds = _simulate(FaultPlan(mcp_crash=1.0), body)
    assert CRASH_MARK in error
    assert after == McpCallResult(text="5")
    assert counts == "mcp_server-1: connects=2 losses=1 calls=2"
    assert kinds == ["mcp_crash"]


def test_a_crash_fails_every_call_in_flight_on_the_connection() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> list[bool]:
        await mcp.list_tools(SPEC)
        injector = McpFaultInjector(FaultPlan(), Entropy(1))
        draws = iter(["mcp_crash", None])
        injector.draw_call = lambda: next(draws)  # type: ignore[method-assign]
        mcp._faults = injector
        crashing = asyncio.ensure_future(_call(mcp))
        await clock.sleep(MCP_CALL_S / 2)  # the second call starts before the crash
        results = await asyncio.gather(crashing, _call(mcp), return_exceptions=True)
        return [isinstance(result, McpUnavailable) for result in results]

    failed, kinds = _simulate(FaultPlan(), body)
    assert failed == [True, True]
    assert kinds == ["mcp_crash"]  # the sibling's, recorded for this (one) request


def test_a_timeout_fails_after_the_calls_timeout_in_virtual_time_and_keeps_the_link() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> tuple[str, float, str]:
        await mcp.list_tools(SPEC)
        started = clock.monotonic_s()
        with pytest.raises(McpUnavailable) as stalled:
            await _call(mcp)
        return str(stalled.value), clock.monotonic_s() - started, mcp.describe()

    (error, took, counts), kinds = _simulate(FaultPlan(mcp_timeout=1.0), body)
    assert TIMEOUT_MARK in error
    assert "7 s" in error
    assert took == pytest.approx(7.0)
    assert counts == "mcp_server-1: connects=1 losses=0 calls=1"
    assert kinds == ["mcp_timeout"]


def test_a_slow_start_past_the_connect_timeout_fails_and_a_later_one_connects() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> list[tuple[str, float]]:
        outcomes = []
        for _ in range(12):
            started = clock.monotonic_s()
            try:
                await mcp.list_tools(SPEC)
                error = ""
            except McpUnavailable as failure:
                error = str(failure)
            outcomes.append((error, clock.monotonic_s() - started))
            await mcp.forget(SPEC.key)
        return outcomes

    outcomes, kinds = _simulate(FaultPlan(mcp_slow_start=1.0), body)
    assert kinds == ["mcp_slow_start"] * 12
    failed = [took for error, took in outcomes if error]
    connected = [took for error, took in outcomes if not error]
    assert all(SLOW_START_MARK in error for error, _ in outcomes if error)
    assert failed
    assert connected
    assert all(took == pytest.approx(MCP_CONNECT_TIMEOUT_S) for took in failed)
    assert all(took <= MCP_CONNECT_TIMEOUT_S + MCP_CALL_S for took in connected)


def test_mcp_fault_draws_are_a_function_of_the_seed() -> None:
    plan = FaultPlan(mcp_crash=0.1, mcp_timeout=0.1, mcp_slow_start=0.1)

    def draws(seed: int) -> list[str | None]:
        injector = McpFaultInjector(plan, Entropy(seed))
        return [injector.draw_call() for _ in range(300)]

    assert draws(4) == draws(4)
    assert draws(4) != draws(5)
    assert {"mcp_crash", "mcp_timeout", None} == set(draws(4))


def test_the_planted_never_reconnects_keeps_failing_after_a_crash() -> None:
    async def body(mcp: SimMcp, clock: SimClock) -> str:
        with pytest.raises(McpUnavailable):
            await _call(mcp)
        mcp._faults.plan = FaultPlan()
        with pytest.raises(McpUnavailable) as again:
            await _call(mcp)
        return str(again.value)

    error, _ = _simulate(FaultPlan(mcp_crash=1.0), body, mcp_class=McpNeverReconnects)
    assert "could not be reached" in error


def test_every_planted_mcp_bug_names_its_subject() -> None:
    assert set(PLANTED_MCP_BUG_SUBJECTS) == set(PLANTED_MCP_BUGS)


@pytest.mark.parametrize("bug", sorted(PLANTED_MCP_BUGS))
def test_planted_mcp_bug_is_caught_within_bounded_seeds(bug: str) -> None:
    plan = FaultPlan(crash=0.02, mcp_crash=0.2, mcp_timeout=0.1)
    factory = PLANTED_MCP_BUGS[bug]
    for seed in range(1, SEEDS_TO_CATCH_PLANTED_BUG_MAX + 1):
        result = run_seed(seed, steps=100, plan=plan, mcp_factory=factory)
        if not result.ok:
            print(f"planted bug {bug} caught by seed {seed}: {result.failure}")  # noqa: T201
            assert result.failure is not None
            assert PLANTED_MCP_BUG_SUBJECTS[bug] in result.failure
            replay = run_seed(seed, steps=100, plan=plan, mcp_factory=factory)
            assert replay.failure == result.failure
            assert replay.trace_hash == result.trace_hash
            return
    pytest.fail(f"{bug} survived {SEEDS_TO_CATCH_PLANTED_BUG_MAX} seeds")


def test_mcp_under_its_faults_and_crashes_keeps_every_invariant() -> None:
    plan = FaultPlan(
        mcp_crash=0.2,
        mcp_timeout=0.1,
        mcp_slow_start=0.15,
        storage_read_failure=0.03,
        storage_write_failure=0.02,
        llm_malformed=0.05,
        crash=0.02,
    )
    for seed in (1, 2, 3):
        first = run_seed(seed, steps=150, plan=plan)
        assert first.ok, f"replay with --seed {seed} --faults ...: {first.failure}"
        again = run_seed(seed, steps=150, plan=plan)
        assert again.trace_hash == first.trace_hash

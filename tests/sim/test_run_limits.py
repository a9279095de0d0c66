"""A seed whose run the loop stops (a deadlock, a loop or virtual-time limit) is that
seed's failure, named with where its tasks waited, never an exception out of `run_seed`:
a sweep goes on and lists it. And a server that dies again while it restarts is restarted
again (sweep seed 9039 hung in its restart's audit until the loop's limit)."""

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, final

from kelpie.env import Entropy
from kelpie.sim import FaultPlan, SimClock, run_seed, run_simulation, running_sim_loop
from kelpie.sim._server import SimServer
from kelpie.storage import Store

# Far below the default budgets (a 30-step run takes a few hundred iterations).
TINY_ITERATIONS_MAX: Final = 50
SHORT_VIRTUAL_TIME_S: Final = 3600.0


def test_run_seed_reports_the_iteration_limit_as_the_seeds_failure() -> None:
    result = run_seed(1, steps=30, iterations_max=TINY_ITERATIONS_MAX)

    assert not result.ok
    assert result.failure is not None
    assert result.failure.startswith("SimLimitExceeded (seed 1): ")
    assert f"ran {TINY_ITERATIONS_MAX} loop iterations (at virtual time" in result.failure
    assert "task(s) pending:" in result.failure
    assert "Client.run (_workload.py:" in result.failure
    # The diagnostic replays exactly, as everything else a seed shows.
    replay = run_seed(1, steps=30, iterations_max=TINY_ITERATIONS_MAX)
    assert replay.failure == result.failure


@final
class _HangingStore:
    """A planted hang: creating an agent waits forever, on a future nobody will set or
    (`rearm`) on a timer that re-arms forever."""

    def __init__(self, inner: Store, *, rearm: bool) -> None:
        self._inner = inner
        self._rearm = rearm

    async def insert_agent(self, *args: Any, **kwargs: Any) -> None:
        while self._rearm:  # noqa: ASYNC110 - a timer that never stops is the point
            await asyncio.sleep(60)
        await asyncio.get_running_loop().create_future()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _hang(*, rearm: bool) -> Callable[[Store], Store]:
    def wrap(inner: Store) -> Store:
        return _HangingStore(inner, rearm=rearm)

    return wrap


def test_run_seed_reports_a_hang_past_the_virtual_time_limit_with_where_it_waits() -> None:
    result = run_seed(
        2,
        steps=30,
        plan=FaultPlan.none(),
        store_wrapper=_hang(rearm=True),
        virtual_time_s_max=SHORT_VIRTUAL_TIME_S,
    )

    assert result.failure is not None
    assert result.failure.startswith("SimLimitExceeded (seed 2): ")
    assert f"passed {SHORT_VIRTUAL_TIME_S} s of virtual time" in result.failure
    # Each pending task shows who started it and, innermost, where it waits.
    assert "Client.run (_workload.py:" in result.failure
    assert "_HangingStore.insert_agent (test_run_limits.py:" in result.failure


def test_run_seed_reports_a_deadlock_as_the_seeds_failure() -> None:
    result = run_seed(2, steps=30, plan=FaultPlan.none(), store_wrapper=_hang(rearm=False))

    assert result.failure is not None
    assert result.failure.startswith("SimDeadlock (seed 2): deadlock at virtual time")
    assert "_HangingStore.insert_agent (test_run_limits.py:" in result.failure


def test_sweep_seed_9039_keeps_every_invariant() -> None:
    # Its second restart's new incarnation crashed at start-up (the embedding worker's
    # write); the audit then waited for the restart running it, until the loop's limit.
    result = run_seed(9039)

    assert result.ok, result.failure


def _restart_with_audit(audit: Callable[[SimServer], Awaitable[None]]) -> SimServer:
    """Starts a fault-free server, crashes it once between requests, and returns it once
    it is up again; `audit` runs after each boot, as the workload's audit does."""

    async def main() -> SimServer:
        with tempfile.TemporaryDirectory(prefix="kelpie-sim-restart-") as tmp:
            server = SimServer(
                data_dir=Path(tmp),
                entropy=Entropy(5),
                plan=FaultPlan.none(),
                clock=SimClock(running_sim_loop()),
            )
            await server.start()
            server.after_restart = lambda: audit(server)
            try:
                await server.crash_and_restart()
                outcome = await server.request("GET", "/v1/agents/")
                assert outcome.status == 200, outcome
            finally:
                await server.stop()
            return server

    return run_simulation(main, seed=5, virtual_time_s_max=SHORT_VIRTUAL_TIME_S)


def test_a_server_that_dies_during_its_restarts_audit_is_restarted_again() -> None:
    seen: list[int | None] = []

    async def audit(server: SimServer) -> None:
        if not seen:
            # This incarnation dies under its own audit (its start-up work crashed it).
            assert server._faulty is not None
            server._faulty.crashed = True
        seen.append((await server.request("GET", "/v1/agents/")).status)

    server = _restart_with_audit(audit)

    assert seen == [None, 200]  # the dead incarnation's answer is lost; the next one's audited
    assert server.crashes == 2
    assert server.incarnation == 3

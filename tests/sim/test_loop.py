import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from kelpie.sim import (
    SimDeadlock,
    SimForbidden,
    SimLimitExceeded,
    SimUnhandledError,
    run_simulation,
    running_sim_loop,
)

WALL_S_MAX = 1.0
TASK_COUNT = 8


def _interleaving(seed: int, *, shuffle: bool) -> list[int]:
    """The order in which TASK_COUNT tasks, each yielding twice, finish."""
    order: list[int] = []

    async def worker(index: int) -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        order.append(index)

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(TASK_COUNT)))

    run_simulation(main, seed=seed, shuffle=shuffle)
    assert sorted(order) == list(range(TASK_COUNT)), "every task finishes exactly once"
    return order


def test_run_simulation_sleeps_an_hour_of_virtual_time_in_a_moment() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert loop.time() == 0.0
        await asyncio.sleep(3600)
        return loop.time()

    started_s = time.perf_counter()
    virtual_s = run_simulation(main, seed=1)
    assert time.perf_counter() - started_s < WALL_S_MAX
    assert virtual_s == 3600.0


def test_run_simulation_fires_timers_in_virtual_time_order() -> None:
    fired: list[tuple[str, float]] = []

    async def sleeper(name: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        fired.append((name, asyncio.get_running_loop().time()))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3.0), sleeper("a", 0.1), sleeper("b", 2.5))

    run_simulation(main, seed=7)
    assert fired == [("a", 0.1), ("b", 2.5), ("c", 3.0)]


def test_run_simulation_times_out_on_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop.create_future(), timeout=5)
        return loop.time()

    assert run_simulation(main, seed=1) == 5.0


def test_run_simulation_reports_a_future_nobody_resolves_as_deadlock() -> None:
    async def wait_forever() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(SimDeadlock, match="wait_forever"):
        run_simulation(wait_forever, seed=1)


def test_run_simulation_same_seed_gives_same_interleaving() -> None:
    assert _interleaving(42, shuffle=True) == _interleaving(42, shuffle=True)


def test_run_simulation_different_seeds_give_different_interleavings() -> None:
    orders = [_interleaving(seed, shuffle=True) for seed in range(10)]
    assert any(order != orders[0] for order in orders[1:])


def test_run_simulation_without_shuffle_runs_tasks_fifo() -> None:
    for seed in range(3):
        assert _interleaving(seed, shuffle=False) == list(range(TASK_COUNT))


def test_run_simulation_returns_main_result_and_reraises_its_failure() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise ValueError("boom")

    assert run_simulation(answer, seed=1) == 42
    with pytest.raises(ValueError, match="boom"):
        run_simulation(fail, seed=1)


def test_run_simulation_cancels_leftover_tasks() -> None:
    cancelled: list[str] = []

    async def background() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("background")
            raise

    async def main() -> asyncio.Task[None]:
        task = asyncio.create_task(background())
        await asyncio.sleep(1)
        return task

    task = run_simulation(main, seed=1)
    assert task.cancelled()
    assert cancelled == ["background"]


def test_run_simulation_fails_on_an_exception_nobody_handled() -> None:
    def explode() -> None:
        raise RuntimeError("callback failed")

    async def main() -> None:
        asyncio.get_running_loop().call_soon(explode)
        await asyncio.sleep(1)

    with pytest.raises(SimUnhandledError, match="callback failed"):
        run_simulation(main, seed=1)


def test_run_simulation_stops_a_busy_loop() -> None:
    async def spin() -> None:
        while True:  # noqa: ASYNC110 - a busy loop is the point of this test
            await asyncio.sleep(0)

    with pytest.raises(SimLimitExceeded, match="iterations"):
        run_simulation(spin, seed=1, iterations_max=1000)


def test_run_simulation_stops_a_timer_that_rearms_forever() -> None:
    async def tick() -> None:
        while True:  # noqa: ASYNC110 - a timer that never stops is the point of this test
            await asyncio.sleep(3600)

    with pytest.raises(SimLimitExceeded, match="virtual time"):
        run_simulation(tick, seed=1, virtual_time_s_max=24 * 3600)


async def _call_executor() -> None:
    await asyncio.get_running_loop().run_in_executor(None, print)


async def _call_to_thread() -> None:
    await asyncio.to_thread(print)


async def _resolve_name() -> None:
    await asyncio.get_running_loop().getaddrinfo("localhost", 80)


async def _open_connection() -> None:
    await asyncio.open_connection("localhost", 80)


@pytest.mark.parametrize("main", [_call_executor, _call_to_thread, _resolve_name, _open_connection])
def test_run_simulation_forbids_threads_and_real_network(
    main: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    with pytest.raises(SimForbidden, match="Env seam"):
        run_simulation(main, seed=1)


def test_sim_event_loop_forbids_registering_a_real_socket() -> None:
    async def main() -> None:
        left, right = socket.socketpair()
        with left, right:
            running_sim_loop().add_reader(left, print)

    with pytest.raises(SimForbidden, match="real I/O"):
        run_simulation(main, seed=1)


_CHILD_SCRIPT = """
import asyncio, hashlib
from kelpie.sim import run_simulation, running_sim_loop

async def main() -> list[str]:
    trace: list[str] = []
    jitter = running_sim_loop().entropy.fork("workload")

    async def worker(name: str) -> None:
        for step in range(5):
            await asyncio.sleep(jitter.randint(0, 3) / 10)
            trace.append(f"{name}:{step}@{asyncio.get_running_loop().time():.3f}")

    await asyncio.gather(*(worker(f"w{i}") for i in range(6)))
    return trace

print(hashlib.sha256("|".join(run_simulation(main, seed=2026)).encode()).hexdigest())
"""


def test_run_simulation_interleaving_ignores_pythonhashseed() -> None:
    def child_digest(hash_seed: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.strip()

    first, second = child_digest("1"), child_digest("2")
    assert len(first) == len(hashlib.sha256().hexdigest())
    assert first == second


def test_run_simulation_closes_leftover_async_generators_in_first_use_order() -> None:
    closed: list[str] = []

    async def numbers(name: str) -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(name)

    async def main() -> list[AsyncIterator[int]]:
        generators = [numbers(name) for name in ("a", "b", "c")]
        for generator in reversed(generators):
            await anext(generator)
        return generators  # kept alive, still suspended, until the loop shuts them down

    generators = run_simulation(main, seed=1, shuffle=False)
    assert len(generators) == 3
    assert closed == ["c", "b", "a"]

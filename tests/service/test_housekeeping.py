"""Housekeeping: stored streams of background runs are pruned once past the window in
which they are served, never a running run's, through the Env's clock; a pruned stream
is answered as expired even after the wall clock steps back. A pass runs when a background
run ends, at most once per interval, and no timer is armed in between."""

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import cast

from kelpie.env import Entropy, Env
from kelpie.schemas import (
    AGENT_PREFIX,
    STREAM_DONE,
    AgentConfig,
    LlmConfig,
    Run,
    RunEvent,
    RunStatus,
    us_from_datetime,
)
from kelpie.service import (
    HOUSEKEEPING_INTERVAL_S,
    RUN_STREAM_RETENTION_S,
    Housekeeping,
    stream_expired,
)
from kelpie.service._housekeeping import PRUNE_BATCH_RUNS
from kelpie.storage import SqliteStore, StorageUnavailable

HOUR = dt.timedelta(hours=1)
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LLM = LlmConfig(model="gpt-4o-mini", model_endpoint_type="openai", context_window=128_000)


async def _agent(store: SqliteStore) -> AgentConfig:
    agent = AgentConfig(
        id=Entropy(7).new_id(AGENT_PREFIX),
        name="a",
        llm_config=LLM,
        system="You are a.",
        created_at=T0,
        updated_at=T0,
    )
    await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=())
    return agent


class StepClock:
    """Wall and monotonic time set by the test; housekeeping never sleeps."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.monotonic = 0.0

    def now_us(self) -> int:
        return us_from_datetime(self.now)

    def monotonic_s(self) -> float:
        return self.monotonic

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("housekeeping keeps no timer")


def _env(store: object, clock: StepClock) -> Env:
    return cast(Env, SimpleNamespace(clock=clock, store=store))


async def _add_run(
    store: SqliteStore, agent_id: str, run_id: str, created: dt.datetime, status: RunStatus
) -> Run:
    run = Run(id=run_id, agent_id=agent_id, status=status, background=True, created_at=created)
    events = [
        RunEvent(run_id=run_id, seq_id=1, data='{"message_type": "assistant_message"}'),
        RunEvent(run_id=run_id, seq_id=2, data=STREAM_DONE),
    ]
    await store.save_run(run, events if status != "running" else events[:1])
    return run


async def _scenario(path: Path) -> None:
    store = SqliteStore.open(path)
    try:
        agent = await _agent(store)
        old_done = await _add_run(store, agent.id, "run-old-done", T0, "completed")
        old_failed = await _add_run(store, agent.id, "run-old-failed", T0, "failed")
        old_running = await _add_run(store, agent.id, "run-old-running", T0, "running")
        recent = await _add_run(store, agent.id, "run-recent", T0 + 2 * HOUR, "completed")
        clock = StepClock(
            T0 + dt.timedelta(seconds=RUN_STREAM_RETENTION_S) + 90 * dt.timedelta(minutes=1)
        )
        env = _env(store, clock)

        assert await Housekeeping(env).prune_run_streams() == 2
        assert await store.list_run_events(old_done.id, 0, 10) == []
        assert await store.list_run_events(old_failed.id, 0, 10) == []
        assert len(await store.list_run_events(old_running.id, 0, 10)) == 1, "running: kept"
        assert len(await store.list_run_events(recent.id, 0, 10)) == 2, "still served: kept"
        assert await Housekeeping(env).prune_run_streams() == 0, "nothing twice"

        # The wall clock steps back into the window: the pruned stream is still expired.
        clock.now = T0 + HOUR
        assert await stream_expired(env, old_done)
        assert not await stream_expired(env, recent)
        assert not await stream_expired(env, old_running)
    finally:
        await store.close()


def test_prunes_ended_runs_past_the_window_only(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path / "kelpie.db"))


async def _many(path: Path) -> tuple[int, int]:
    store = SqliteStore.open(path)
    try:
        agent = await _agent(store)
        count = PRUNE_BATCH_RUNS * 2 + 5
        for n in range(count):
            await _add_run(store, agent.id, f"run-{n:04}", T0, "completed")
        pruned = await Housekeeping(_env(store, StepClock(T0 + 4 * HOUR))).prune_logged()
        left = await store.list_run_events(f"run-{count - 1:04}", 0, 10)
        return pruned, len(left)
    finally:
        await store.close()


def test_a_pass_prunes_in_batches_until_done(tmp_path: Path) -> None:
    pruned, left = asyncio.run(_many(tmp_path / "kelpie.db"))
    assert pruned == PRUNE_BATCH_RUNS * 2 + 5
    assert left == 0


class CountingStore:
    def __init__(self, failure: Exception | None = None) -> None:
        self.calls = 0
        self.failure = failure

    async def prune_run_streams(self, created_before_us: int, runs_max: int) -> int:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return 0


async def _ended(housekeeping: Housekeeping) -> bool:
    """Tells housekeeping a run ended; whether a pass ran."""
    started = housekeeping.run_ended()
    if started is not None:
        await started
    return started is not None


def test_runs_ending_start_a_pass_at_most_once_per_interval() -> None:
    async def scenario() -> list[bool]:
        store, clock = CountingStore(), StepClock(T0)
        housekeeping = Housekeeping(_env(store, clock))
        passes = [await _ended(housekeeping), await _ended(housekeeping)]
        clock.monotonic = HOUSEKEEPING_INTERVAL_S - 1
        passes.append(await _ended(housekeeping))
        clock.monotonic = HOUSEKEEPING_INTERVAL_S
        passes.append(await _ended(housekeeping))
        assert store.calls == passes.count(True)
        return passes

    assert asyncio.run(scenario()) == [True, False, False, True]


def test_a_failed_pass_is_tried_again_when_the_next_run_ends() -> None:
    async def scenario() -> int:
        store = CountingStore(StorageUnavailable("disk gone"))
        housekeeping = Housekeeping(_env(store, StepClock(T0)))
        assert await _ended(housekeeping)
        assert await _ended(housekeeping), "a failure does not wait out the interval"
        return store.calls

    assert asyncio.run(scenario()) == 2

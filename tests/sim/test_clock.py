import asyncio
import datetime

from kelpie.env import Clock
from kelpie.sim import SIM_EPOCH_US, SimClock, run_simulation, running_sim_loop


def test_sim_epoch_is_2026_new_year_utc() -> None:
    epoch = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert SIM_EPOCH_US == int(epoch.timestamp()) * 1_000_000


def test_sim_clock_advances_with_sleep() -> None:
    async def main() -> list[tuple[int, float]]:
        clock: Clock = SimClock(running_sim_loop())
        readings = [(clock.now_us(), clock.monotonic_s())]
        await clock.sleep(1.5)
        readings.append((clock.now_us(), clock.monotonic_s()))
        await asyncio.sleep(60)
        readings.append((clock.now_us(), clock.monotonic_s()))
        return readings

    assert run_simulation(main, seed=1) == [
        (SIM_EPOCH_US, 0.0),
        (SIM_EPOCH_US + 1_500_000, 1.5),
        (SIM_EPOCH_US + 61_500_000, 61.5),
    ]


def test_sim_clock_jump_moves_wall_time_only() -> None:
    async def main() -> list[tuple[int, float]]:
        clock = SimClock(running_sim_loop())
        await clock.sleep(10)
        clock.jump(-3600)
        backwards = (clock.now_us(), clock.monotonic_s())
        clock.jump(7200.25)
        forwards = (clock.now_us(), clock.monotonic_s())
        return [backwards, forwards]

    assert run_simulation(main, seed=1) == [
        (SIM_EPOCH_US + 10_000_000 - 3_600_000_000, 10.0),
        (SIM_EPOCH_US + 10_000_000 + 3_600_250_000, 10.0),
    ]


def test_sim_clock_skew_offsets_wall_time() -> None:
    async def main() -> int:
        clock = SimClock(running_sim_loop(), epoch_us=0)
        clock.skew_us = 250
        await clock.sleep(0.001)
        return clock.now_us()

    assert run_simulation(main, seed=1) == 1_250


def test_wall_range_bounds_every_reading_across_jumps() -> None:
    epoch_us = 1_000_000_000

    async def main() -> list[tuple[int, int]]:
        clock = SimClock(running_sim_loop(), epoch_us=epoch_us)
        await clock.sleep(10)
        quiet = clock.wall_range_us(5.0)
        clock.jump(-100)
        await clock.sleep(1)
        clock.jump(50)
        await clock.sleep(1)
        past = clock.wall_range_us(10.5, 10.8)
        return [quiet, clock.wall_range_us(10.0), clock.wall_range_us(10.5), past]

    quiet, since_ten, since_half, past = [
        (low - epoch_us, high - epoch_us) for low, high in run_simulation(main, seed=1)
    ]
    assert quiet == (5_000_000, 10_000_000)
    # From 10 s: 10 s just before the jump back (the highest before now), -90 s right after
    # it (the lowest), -89 s just before the jump forward, -39 s right after it, -38 s now.
    assert since_ten == (-90_000_000, 10_000_000)
    assert since_half == (-89_500_000, -38_000_000)
    # A window in the past, between the jumps: its own ends bound it.
    assert past == (-89_500_000, -89_200_000)

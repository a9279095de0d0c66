"""SystemClock: the real wall clock, monotonic clock and sleep."""

import asyncio
import time
from typing import Final

from kelpie.env import Clock, SystemClock

# Generous: a loaded CI machine may deschedule the test between two readings.
WALL_CLOCK_SKEW_US_MAX: Final = 1_000_000
READINGS: Final = 1_000
SLEEP_S: Final = 0.05


def test_system_clock_is_a_clock() -> None:
    clock: Clock = SystemClock()
    assert isinstance(clock.now_us(), int)
    assert isinstance(clock.monotonic_s(), float)


def test_system_clock_now_us_matches_time_time() -> None:
    clock = SystemClock()
    before = time.time() * 1e6
    now = clock.now_us()
    after = time.time() * 1e6
    assert before - WALL_CLOCK_SKEW_US_MAX <= now <= after + WALL_CLOCK_SKEW_US_MAX
    assert abs(now - (before + after) / 2) < WALL_CLOCK_SKEW_US_MAX


def test_system_clock_monotonic_never_decreases() -> None:
    clock = SystemClock()
    readings = [clock.monotonic_s() for _ in range(READINGS)]
    assert readings == sorted(readings)


def test_system_clock_sleep_waits_at_least_the_duration() -> None:
    clock = SystemClock()
    start = clock.monotonic_s()
    asyncio.run(clock.sleep(SLEEP_S))
    assert clock.monotonic_s() - start >= SLEEP_S

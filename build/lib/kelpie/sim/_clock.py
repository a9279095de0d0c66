"""The simulated clock: `kelpie.env.Clock` on a `SimEventLoop`'s virtual time.

Monotonic time is the loop's virtual clock. Wall time is a fixed epoch plus that clock
plus a skew that fault injection moves (`jump`), so a wall-clock jump or skew never
disturbs deadlines, as on a real host whose NTP steps the clock.
"""

import asyncio
from typing import Final, final

from kelpie.sim._loop import SimEventLoop

# 2026-01-01T00:00:00Z: every simulated run starts its wall clock here.
SIM_EPOCH_US: Final = 1_767_225_600_000_000
_US_PER_S: Final = 1_000_000


@final
class SimClock:
    """A `kelpie.env.Clock` driven by `loop`'s virtual time.

    Args:
        loop: the simulation loop whose virtual time this clock reads.
        epoch_us: wall-clock time, in µs since the Unix epoch, at virtual time 0.
    """

    def __init__(self, loop: SimEventLoop, *, epoch_us: int = SIM_EPOCH_US) -> None:
        assert epoch_us >= 0, "epoch before the Unix epoch"
        self._loop = loop
        self.epoch_us = epoch_us
        # Wall clock minus (epoch + virtual time): what clock faults move.
        self.skew_us = 0
        # Every jump as (virtual time, skew before, skew after), for `wall_range_us`.
        self._jumps: list[tuple[float, int, int]] = []

    def now_us(self) -> int:
        now_us = self.epoch_us + round(self._loop.time() * _US_PER_S) + self.skew_us
        assert now_us >= 0, "simulated wall clock before the Unix epoch"
        return now_us

    def monotonic_s(self) -> float:
        return self._loop.time()

    async def sleep(self, seconds: float) -> None:
        assert asyncio.get_running_loop() is self._loop, "sleeping on another loop"
        await asyncio.sleep(seconds)

    def jump(self, seconds: float) -> None:
        """Steps the wall clock by `seconds` (negative: backwards); monotonic time is kept."""
        before = self.skew_us
        self.skew_us += round(seconds * _US_PER_S)
        self._jumps.append((self._loop.time(), before, self.skew_us))

    def wall_range_us(self, since_s: float, until_s: float | None = None) -> tuple[int, int]:
        """The lowest and highest wall time `now_us` could have returned between monotonic
        times `since_s` and `until_s` (default: now): what a check needs to bound a server's
        reading of the clock during a request. Between jumps wall time only rises, so the
        extremes are at the ends and at the jumps (a jump at either end counts both ways).
        Only moves made with `jump` are seen."""
        until = self._loop.time() if until_s is None else until_s
        assert since_s <= until, "a wall range that ends before it starts"

        def wall(at_s: float, skew_us: int) -> int:
            return self.epoch_us + round(at_s * _US_PER_S) + skew_us

        jumps = [jump for jump in self._jumps if since_s <= jump[0] <= until]
        start_skew = jumps[0][1] if jumps else self._skew_at(since_s)
        end_skew = jumps[-1][2] if jumps else start_skew
        low = min([wall(since_s, start_skew), *(wall(t, after) for t, _, after in jumps)])
        high = max([wall(until, end_skew), *(wall(t, before) for t, before, _ in jumps)])
        return low, high

    def _skew_at(self, at_s: float) -> int:
        """The skew in effect at `at_s` when no jump happened at that very time."""
        skew = self.skew_us
        for jumped_at, before, _ in reversed(self._jumps):
            if jumped_at <= at_s:
                break
            skew = before
        return skew

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
        self.skew_us += round(seconds * _US_PER_S)

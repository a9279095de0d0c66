"""The real effects, used by the production server. The only module allowed to read the
system clock and the operating system's randomness."""

import asyncio
import os
import time
from typing import final

from kelpie.env._entropy import SEED_BITS, Entropy


@final
class SystemClock:
    def now_us(self) -> int:
        return time.time_ns() // 1000

    def monotonic_s(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def system_entropy() -> Entropy:
    """Entropy seeded from the operating system: ids differ between server processes, and
    secrets come from the operating system's CSPRNG."""
    return Entropy(int.from_bytes(os.urandom(SEED_BITS // 8), "big"), secrets_from_os=True)

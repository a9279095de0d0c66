"""The clock seam: wall time for records, monotonic time for deadlines, and sleeping."""

from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int:
        """Wall-clock time in microseconds since the Unix epoch (UTC)."""
        ...

    def monotonic_s(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""
        ...

    async def sleep(self, seconds: float) -> None: ...

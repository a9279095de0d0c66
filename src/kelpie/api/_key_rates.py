"""Per-key rate limits: a token bucket per API key that has a limit, holding a minute's
worth of requests and refilled evenly over the minute. Kept in memory by the process (a
restart starts every bucket full), and bounded by the number of keys."""

import math
from typing import final

from kelpie.env import Clock

_S_PER_MINUTE = 60.0


@final
class KeyRates:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        # key id -> (requests left, when counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after_s(self, key_id: str, per_minute: int) -> int | None:
        """Spends one request of the key's allowance; None if there was one, else whole
        seconds until there will be."""
        assert per_minute >= 1, "a rate limit allows at least one request a minute"
        now = self._clock.monotonic_s()
        refill_per_s = per_minute / _S_PER_MINUTE
        left, counted_at = self._buckets.get(key_id, (float(per_minute), now))
        left = min(float(per_minute), left + (now - counted_at) * refill_per_s)
        if left >= 1:
            self._buckets[key_id] = (left - 1, now)
            return None
        self._buckets[key_id] = (left, now)
        return max(1, math.ceil((1 - left) / refill_per_s))

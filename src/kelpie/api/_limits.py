"""Abuse limits that `GuardMiddleware` applies: the request body counted as it streams (a
chunked body has no Content-Length to check up front), the wait for each piece of it
bounded, and failed authentication throttled per client address."""

import asyncio
import math
from typing import Final

from starlette.types import Message, Receive

from kelpie.env import Clock

# Letta exempts health and readiness from password checks.
OPEN_PATHS: Final = frozenset({"/v1/health", "/v1/ready"})
# Client addresses whose failures are remembered; past this the least recently failed go.
THROTTLED_ADDRESSES_MAX: Final = 10_000


class BodyRejected(BaseException):
    """Raised from `receive` to abandon a request whose body is too large or too slow.

    A BaseException, like cancellation, so that no handler's or framework's `except
    Exception` turns it into some other answer on the way out: `GuardMiddleware` catches it
    and answers with `status` and `detail`, closing the connection."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class LimitedReceive:
    """`receive` for a request with a body: over `bytes_max` is a 413, and a piece of the
    body that does not arrive within `timeout_s` of asking is a 408. Once the body is
    complete, waiting (for a disconnect, by a streaming response) is unbounded."""

    def __init__(self, receive: Receive, *, bytes_max: int, timeout_s: float) -> None:
        self._receive = receive
        self._bytes_max = bytes_max
        self._timeout_s = timeout_s
        self._received = 0
        self._complete = False

    async def __call__(self) -> Message:
        if self._complete:
            return await self._receive()
        try:
            async with asyncio.timeout(self._timeout_s):
                message = await self._receive()
        except TimeoutError:
            raise BodyRejected(
                408, f"Request body not received: nothing arrived for {self._timeout_s:g} s"
            ) from None
        if message["type"] != "http.request":
            self._complete = True
            return message
        self._received += len(message.get("body", b""))
        if self._received > self._bytes_max:
            raise BodyRejected(413, f"Request body over {self._bytes_max} bytes")
        if not message.get("more_body", False):
            self._complete = True
        return message


def body_rejection(error: BaseException) -> BodyRejected | None:
    """The `BodyRejected` that `error` is, or carries (a task group wraps what it raises)."""
    if isinstance(error, BodyRejected):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := body_rejection(inner)) is not None:
                return found
    return None


class AuthThrottle:
    """A token bucket per client address, spent by failed authentication: `failures_max`
    failures at once, refilled at `failures_max` per `window_s`. An address whose bucket
    is empty is refused (429) before its credentials are even compared, the right ones
    too, so guessing gains nothing from the refusal; other addresses are unaffected."""

    def __init__(self, clock: Clock, *, failures_max: int, window_s: float) -> None:
        self._clock = clock
        self._capacity = float(failures_max)
        self._refill_per_s = failures_max / window_s
        # address -> (tokens, when counted); least recently failed first.
        self._buckets: dict[str, tuple[float, float]] = {}

    def _tokens(self, address: str, now: float) -> float:
        tokens, counted_at = self._buckets.get(address, (self._capacity, now))
        return min(self._capacity, tokens + (now - counted_at) * self._refill_per_s)

    def retry_after_s(self, address: str) -> int | None:
        """Whole seconds until `address` may try again, or None if it may now."""
        if address not in self._buckets:
            return None
        now = self._clock.monotonic_s()
        tokens = self._tokens(address, now)
        if tokens >= 1:
            return None
        return max(1, math.ceil((1 - tokens) / self._refill_per_s))

    def failed(self, address: str) -> None:
        now = self._clock.monotonic_s()
        tokens = self._tokens(address, now) - 1
        self._buckets.pop(address, None)
        self._buckets[address] = (max(tokens, 0.0), now)
        if len(self._buckets) > THROTTLED_ADDRESSES_MAX:
            del self._buckets[next(iter(self._buckets))]

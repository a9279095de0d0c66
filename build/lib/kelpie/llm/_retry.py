"""Retrying a model call, and the timeout before it counts as failed: the policy every
provider shares.

The SDKs' own retries are off (`max_retries=0`): they sleep on the system clock, which the
simulator cannot drive, and they cannot know that a streamed answer must not be asked for
twice. Retrying lives here instead, with time from `Clock` and jitter from `Entropy`.
"""

import logging
from collections.abc import Mapping
from typing import Final, final

from kelpie.env import Clock, Entropy
from kelpie.llm._errors import LlmError
from kelpie.llm._types import LlmClient, LlmDelta, LlmRequest, LlmResponse, OnDelta

# How long a model request may wait on the network (to connect, or for the next bytes of
# the answer) before it counts as failed. It bounds silences, not a whole streamed answer.
LLM_REQUEST_TIMEOUT_S: Final = 120.0
LLM_ATTEMPTS_MAX: Final = 4
LLM_BACKOFF_BASE_S: Final = 0.5
LLM_BACKOFF_CAP_S: Final = 20.0
# A provider that asks for a longer pause than this (a spent daily quota, say) is not
# waited for: the run fails now with the provider's reason instead of hanging.
LLM_RETRY_AFTER_MAX_S: Final = 60.0
# HTTP statuses worth asking again: the provider failed to answer, not refused the request.
# 408 and 409 are transient per both SDKs' own retry rules; 429 is a rate limit.
HTTP_STATUSES_RETRYABLE: Final = frozenset({408, 409, 429})

log = logging.getLogger(__name__)


def status_retryable(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an HTTP error status is worth retrying. `x-should-retry`, which OpenAI and
    Anthropic send to override their clients' rules, wins when present."""
    should_retry = headers.get("x-should-retry")
    if should_retry == "true":
        return True
    if should_retry == "false":
        return False
    return status >= 500 or status in HTTP_STATUSES_RETRYABLE


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The pause a provider asked for, from `retry-after-ms` or `retry-after` (seconds).
    An HTTP-date `retry-after` is ignored: reading it would need the wall clock."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0.0:
            return seconds
    return None


@final
class RetryingLlm:
    """An LlmClient that asks `inner` again when it fails in a way retrying can fix.

    Waits with exponential backoff and full jitter, or as long as the provider asked
    (`retry_after_s`). Never retries once a delta has gone out through `on_delta`: the
    listener has seen part of an answer that a second attempt would contradict.
    """

    def __init__(
        self,
        inner: LlmClient,
        clock: Clock,
        entropy: Entropy,
        attempts_max: int = LLM_ATTEMPTS_MAX,
    ) -> None:
        assert attempts_max >= 1, "attempts_max must allow one attempt"
        self._inner = inner
        self._clock = clock
        self._entropy = entropy
        self._attempts_max = attempts_max

    @property
    def inner(self) -> LlmClient:
        return self._inner

    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        streamed = False

        async def forward(delta: LlmDelta) -> None:
            nonlocal streamed
            assert on_delta is not None
            streamed = True
            await on_delta(delta)

        listener = forward if on_delta is not None else None
        attempt = 1
        while True:
            try:
                return await self._inner.complete(request, listener)
            except LlmError as error:
                delay_s = self._delay_s(attempt, error)
                if streamed or delay_s is None:
                    raise
                log.info(
                    "model call failed (attempt %d of %d), retrying in %.2f s: %s",
                    attempt,
                    self._attempts_max,
                    delay_s,
                    error.detail,
                )
            await self._clock.sleep(delay_s)
            attempt += 1

    def _delay_s(self, attempt: int, error: LlmError) -> float | None:
        """How long to wait before the next attempt, or None to give up."""
        if not error.retryable or attempt >= self._attempts_max:
            return None
        if error.retry_after_s is not None:
            if error.retry_after_s > LLM_RETRY_AFTER_MAX_S:
                return None
            return error.retry_after_s
        ceiling_s = min(LLM_BACKOFF_CAP_S, LLM_BACKOFF_BASE_S * 2.0 ** (attempt - 1))
        return self._entropy.random() * ceiling_s

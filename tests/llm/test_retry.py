"""RetryingLlm: which failures are asked again, how long it waits, and when it gives up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import pytest

from kelpie.env import Entropy
from kelpie.llm import (
    LLM_ATTEMPTS_MAX,
    LlmDelta,
    LlmError,
    LlmProviderFailed,
    LlmRateLimited,
    LlmRequest,
    LlmResponse,
    LlmTimeout,
    OnDelta,
    OpenAIClient,
    RetryingLlm,
    Usage,
)

from ._support import FakeClock, FakeLlm, chat_request

SEED: Final = 7
ANSWER: Final = LlmResponse("Done.", (), "stop", Usage())
REQUEST: Final = chat_request()


class FlakyLlm:
    """Plays `outcomes` in order: an error is raised (after streaming `deltas_first`
    deltas, if a listener is given), a response is returned."""

    def __init__(self, outcomes: Sequence[LlmError | LlmResponse], deltas_first: int = 0) -> None:
        self._outcomes = list(outcomes)
        self._deltas_first = deltas_first
        self.calls = 0

    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        outcome = self._outcomes[self.calls]
        self.calls += 1
        if on_delta is not None:
            for _ in range(self._deltas_first):
                await on_delta(LlmDelta(content="par"))
        if isinstance(outcome, LlmError):
            raise outcome
        return outcome


def _run(llm: RetryingLlm, on_delta: OnDelta | None = None) -> LlmResponse:
    return asyncio.run(llm.complete(REQUEST, on_delta))


def _retrying(
    inner: FlakyLlm, clock: FakeClock, attempts_max: int = LLM_ATTEMPTS_MAX
) -> RetryingLlm:
    return RetryingLlm(inner, clock, Entropy(SEED), attempts_max=attempts_max)


def test_retries_rate_limit_and_server_error_then_succeeds() -> None:
    inner = FlakyLlm(
        [LlmRateLimited("slow down", retry_after_s=1.5), LlmProviderFailed("HTTP 500"), ANSWER]
    )
    clock = FakeClock()

    assert _run(_retrying(inner, clock)) == ANSWER

    assert inner.calls == 3
    assert clock.sleeps_s[0] == 1.5  # as the provider asked
    assert 0.0 <= clock.sleeps_s[1] <= 1.0  # full jitter under the second backoff step
    assert len(clock.sleeps_s) == 2


def test_timeouts_are_retried() -> None:
    inner = FlakyLlm([LlmTimeout("too slow"), ANSWER])

    assert _run(_retrying(inner, FakeClock())) == ANSWER
    assert inner.calls == 2


def test_gives_up_after_attempts_max_with_the_last_error() -> None:
    errors = [LlmProviderFailed(f"HTTP 500 #{n}") for n in range(LLM_ATTEMPTS_MAX)]
    inner = FlakyLlm(errors)
    clock = FakeClock()

    with pytest.raises(LlmProviderFailed) as caught:
        _run(_retrying(inner, clock))

    assert caught.value is errors[-1]
    assert inner.calls == LLM_ATTEMPTS_MAX
    assert len(clock.sleeps_s) == LLM_ATTEMPTS_MAX - 1


def test_backoff_grows_and_stays_under_its_ceiling() -> None:
    attempts_max = 8
    inner = FlakyLlm([LlmProviderFailed("HTTP 503")] * (attempts_max - 1) + [ANSWER])
    clock = FakeClock()

    _run(_retrying(inner, clock, attempts_max=attempts_max))

    ceilings_s = [min(20.0, 0.5 * 2**n) for n in range(attempts_max - 1)]
    assert all(0.0 <= s <= c for s, c in zip(clock.sleeps_s, ceilings_s, strict=True))


def test_jitter_is_deterministic_for_a_seed() -> None:
    def sleeps() -> list[float]:
        clock = FakeClock()
        _run(_retrying(FlakyLlm([LlmProviderFailed("HTTP 500")] * 3 + [ANSWER]), clock))
        return clock.sleeps_s

    assert sleeps() == sleeps()


def test_refused_request_is_not_retried() -> None:
    inner = FlakyLlm([LlmProviderFailed("HTTP 400: bad request", retryable=False), ANSWER])
    clock = FakeClock()

    with pytest.raises(LlmProviderFailed):
        _run(_retrying(inner, clock))

    assert inner.calls == 1
    assert clock.sleeps_s == []


def test_long_retry_after_is_not_waited_for() -> None:
    inner = FlakyLlm([LlmRateLimited("quota spent", retry_after_s=3600.0), ANSWER])
    clock = FakeClock()

    with pytest.raises(LlmRateLimited):
        _run(_retrying(inner, clock))

    assert inner.calls == 1
    assert clock.sleeps_s == []


def test_no_retry_once_a_delta_was_streamed() -> None:
    inner = FlakyLlm([LlmProviderFailed("connection lost"), ANSWER], deltas_first=1)
    seen: list[LlmDelta] = []

    async def record(delta: LlmDelta) -> None:
        seen.append(delta)

    with pytest.raises(LlmProviderFailed):
        _run(_retrying(inner, FakeClock()), record)

    assert inner.calls == 1
    assert seen == [LlmDelta(content="par")]


def test_streaming_failure_before_any_delta_is_retried() -> None:
    inner = FlakyLlm([LlmProviderFailed("HTTP 502"), ANSWER])
    seen: list[LlmDelta] = []

    async def record(delta: LlmDelta) -> None:
        seen.append(delta)

    assert _run(_retrying(inner, FakeClock()), record) == ANSWER
    assert inner.calls == 2


def test_end_to_end_against_the_fake_server(fake_llm: FakeLlm) -> None:
    fake_llm.script(
        {"error": {"status": 429, "message": "Slow down.", "retry_after": 3}},
        {"error": {"status": 500, "message": "Oops."}},
        {"content": "Finally."},
    )
    clock = FakeClock()

    async def call() -> LlmResponse:
        client = OpenAIClient(fake_llm.provider("openai"))
        try:
            return await RetryingLlm(client, clock, Entropy(SEED)).complete(REQUEST)
        finally:
            await client.aclose()

    response = asyncio.run(call())

    assert response.content == "Finally."
    assert clock.sleeps_s[0] == 3.0
    assert len(clock.sleeps_s) == 2
    assert len(fake_llm.requests()) == 3

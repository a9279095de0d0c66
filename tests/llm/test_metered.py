"""MeteredLlm: each call counted by provider, model and status, with its time on the
clock it is given and the tokens of its answer; failures by error type; the answer or
the error passes through unchanged."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kelpie.llm import LlmRequest, LlmResponse, LlmTimeout, MeteredLlm, OnDelta, Usage
from kelpie.obs import Metrics

from ._support import FakeClock, chat_request

ANSWER = LlmResponse("Hi.", (), "stop", Usage(prompt_tokens=40, completion_tokens=2))
CALL_TIME_S = 1.5


class TimedLlm:
    """Takes CALL_TIME_S on the clock, then answers or raises `outcome`."""

    def __init__(self, clock: FakeClock, outcome: LlmResponse | Exception) -> None:
        self._clock = clock
        self._outcome = outcome

    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        self._clock.now_s += CALL_TIME_S
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    text = metrics.render().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and set(labels.items()) <= set(s.labels.items())
    )


def metered(metrics: Metrics, clock: FakeClock, outcome: LlmResponse | Exception) -> MeteredLlm:
    inner = TimedLlm(clock, outcome)
    return MeteredLlm(inner, metrics, clock, provider="openai", model="gpt-4o-mini")


def test_an_answer_is_counted_with_its_time_and_tokens() -> None:
    metrics, clock = Metrics(), FakeClock()

    answer = asyncio.run(metered(metrics, clock, ANSWER).complete(chat_request()))

    assert answer is ANSWER
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    assert sample(metrics, "kelpie_llm_calls_total", status="ok", **labels) == 1
    assert sample(metrics, "kelpie_llm_call_duration_seconds_sum", **labels) == CALL_TIME_S
    assert sample(metrics, "kelpie_llm_tokens_total", kind="prompt", **labels) == 40
    assert sample(metrics, "kelpie_llm_tokens_total", kind="completion", **labels) == 2


def test_a_failure_is_counted_by_its_error_type_and_raised() -> None:
    metrics, clock = Metrics(), FakeClock()
    failure = LlmTimeout("no answer in 60 s")

    with pytest.raises(LlmTimeout) as raised:
        asyncio.run(metered(metrics, clock, failure).complete(chat_request()))

    assert raised.value is failure
    assert sample(metrics, "kelpie_llm_calls_total", status="llm_timeout") == 1
    assert sample(metrics, "kelpie_llm_call_duration_seconds_count") == 1
    assert sample(metrics, "kelpie_llm_tokens_total") == 0


def test_a_cancelled_call_is_counted_as_cancelled() -> None:
    metrics, clock = Metrics(), FakeClock()

    async def scenario() -> None:
        blocked = asyncio.Event()

        class Waiting:
            async def complete(
                self, request: LlmRequest, on_delta: OnDelta | None = None
            ) -> LlmResponse:
                await blocked.wait()
                return ANSWER

        call = asyncio.ensure_future(
            MeteredLlm(Waiting(), metrics, clock, provider="openai", model="m").complete(
                chat_request()
            )
        )
        await asyncio.sleep(0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(scenario())

    assert sample(metrics, "kelpie_llm_calls_total", status="cancelled") == 1

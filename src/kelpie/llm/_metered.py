"""An `LlmClient` that records each call in the server's metrics: its outcome, how long it
took (retries included) and the tokens the answer used, by provider and model; and, with
tracing on, in a span of its own under the step's."""

import asyncio
from typing import Final, final

from kelpie.env import Clock
from kelpie.llm._errors import LlmError
from kelpie.llm._types import LlmClient, LlmRequest, LlmResponse, OnDelta, Usage
from kelpie.obs import Metrics, TraceAttr, Tracing

ANSWERED: Final = "ok"
# A call abandoned before it answered (its run was cancelled).
CANCELLED: Final = "cancelled"


@final
class MeteredLlm:
    """Wraps the client of one provider and model; a failed call counts under its
    `error_type`."""

    def __init__(
        self,
        client: LlmClient,
        metrics: Metrics,
        clock: Clock,
        *,
        provider: str,
        model: str,
        tracing: Tracing | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._tracing = tracing or Tracing()
        self._clock = clock
        self._provider = provider
        self._model = model

    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        with self._tracing.llm_call(self._provider, self._model) as span:
            started_s = self._clock.monotonic_s()
            try:
                response = await self._client.complete(request, on_delta)
            except LlmError as error:
                self._record(error.error_type, started_s)
                span.fail(error.error_type)
                raise
            except asyncio.CancelledError:
                self._record(CANCELLED, started_s)
                span.fail(CANCELLED)
                raise
            self._record(ANSWERED, started_s, response.usage)
            if self._tracing.enabled:
                span.set_attribute(TraceAttr.GENAI_INPUT_TOKENS, response.usage.prompt_tokens)
                span.set_attribute(TraceAttr.GENAI_OUTPUT_TOKENS, response.usage.completion_tokens)
                span.set_attribute(TraceAttr.GENAI_FINISH_REASONS, (response.finish_reason,))
            return response

    def _record(self, status: str, started_s: float, usage: Usage | None = None) -> None:
        self._metrics.record_llm_call(
            self._provider,
            self._model,
            status,
            self._clock.monotonic_s() - started_s,
            prompt_tokens=0 if usage is None else usage.prompt_tokens,
            completion_tokens=0 if usage is None else usage.completion_tokens,
        )

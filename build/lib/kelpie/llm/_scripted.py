"""A model that answers from a script, for tests and the simulator only: no network, no
SDK, and the same answer streamed in the same pieces every time."""

import itertools
from collections.abc import Callable
from typing import Final, final

from kelpie.llm._types import LlmClient, LlmDelta, LlmRequest, LlmResponse, OnDelta
from kelpie.schemas import LlmConfig

# A streamed text is cut into at most this many pieces, so listeners see real deltas.
SCRIPTED_TEXT_PIECES_MAX: Final = 3

Script = Callable[[LlmRequest], LlmResponse]


def _pieces(text: str) -> list[str]:
    """`text` cut into at most SCRIPTED_TEXT_PIECES_MAX near-equal, non-empty pieces."""
    count = min(SCRIPTED_TEXT_PIECES_MAX, len(text))
    bounds = [len(text) * i // count for i in range(count + 1)] if count else []
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


def scripted_deltas(response: LlmResponse) -> list[LlmDelta]:
    """The deltas a provider would stream for `response`: reasoning, then content, then
    each tool call as its id and name followed by pieces of its arguments."""
    deltas = [LlmDelta(reasoning=piece) for piece in _pieces(response.reasoning or "")]
    deltas += [LlmDelta(content=piece) for piece in _pieces(response.content or "")]
    for index, call in enumerate(response.tool_calls):
        deltas.append(LlmDelta(tool_call_index=index, tool_call_id=call.id, tool_name=call.name))
        deltas += [
            LlmDelta(tool_call_index=index, arguments=piece) for piece in _pieces(call.arguments)
        ]
    return deltas


@final
class ScriptedLlm:
    """For tests and simulation only. `script` decides each answer (it may raise an
    `LlmError` to play a failing provider); with `on_delta` the answer is also streamed,
    deterministically, through `scripted_deltas`."""

    def __init__(self, script: Script) -> None:
        self._script = script

    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        response = self._script(request)
        if on_delta is not None:
            for delta in scripted_deltas(response):
                await on_delta(delta)
        return response


@final
class ScriptedProviders:
    """For tests and simulation only: an `LlmProviders` whose every model is one
    `ScriptedLlm` running `script`."""

    def __init__(self, script: Script) -> None:
        self._llm = ScriptedLlm(script)

    def client_for(self, llm: LlmConfig) -> LlmClient:
        return self._llm

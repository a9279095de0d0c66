"""ScriptedLlm and ScriptedProviders: scripted answers, streamed the same way every time."""

from __future__ import annotations

import asyncio
from typing import Final

import pytest

from kelpie.llm import (
    LlmDelta,
    LlmRateLimited,
    LlmRequest,
    LlmResponse,
    ScriptedLlm,
    ScriptedProviders,
    ToolCall,
    Usage,
    scripted_deltas,
)

from ._support import assemble, chat_request, llm_config

ANSWER: Final = LlmResponse(
    content="Let me check the weather for you.",
    tool_calls=(
        ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),
        ToolCall("call_2", "get_time", '{"zone": "UTC"}'),
    ),
    finish_reason="tool_calls",
    usage=Usage(10, 5, 15),
    reasoning="The user wants weather.",
)


def _stream(llm: ScriptedLlm, request: LlmRequest) -> tuple[LlmResponse, list[LlmDelta]]:
    deltas: list[LlmDelta] = []

    async def record(delta: LlmDelta) -> None:
        deltas.append(delta)

    return asyncio.run(llm.complete(request, record)), deltas


def test_answers_from_the_script_with_the_request() -> None:
    seen: list[LlmRequest] = []

    def script(request: LlmRequest) -> LlmResponse:
        seen.append(request)
        return ANSWER

    request = chat_request()

    assert asyncio.run(ScriptedLlm(script).complete(request)) == ANSWER
    assert seen == [request]


def test_streams_deltas_that_reassemble_into_the_answer() -> None:
    response, deltas = _stream(ScriptedLlm(lambda _: ANSWER), chat_request())

    assert response == ANSWER
    assert assemble(deltas) == (ANSWER.content, ANSWER.reasoning, ANSWER.tool_calls)


def test_streaming_is_deterministic() -> None:
    llm = ScriptedLlm(lambda _: ANSWER)

    assert _stream(llm, chat_request())[1] == _stream(llm, chat_request())[1]
    assert _stream(llm, chat_request())[1] == scripted_deltas(ANSWER)


def test_text_is_cut_into_a_few_pieces() -> None:
    deltas = scripted_deltas(ANSWER)

    content = [d.content for d in deltas if d.content]
    assert 1 < len(content) <= 3
    assert "".join(content) == ANSWER.content


def test_tool_calls_stream_id_and_name_before_arguments() -> None:
    deltas = [d for d in scripted_deltas(ANSWER) if d.tool_call_index == 1]

    assert deltas[0] == LlmDelta(tool_call_index=1, tool_call_id="call_2", tool_name="get_time")
    assert "".join(d.arguments or "" for d in deltas[1:]) == '{"zone": "UTC"}'


def test_short_and_empty_texts() -> None:
    answer = LlmResponse("Hi", (), "stop", Usage())

    assert scripted_deltas(answer) == [LlmDelta(content="H"), LlmDelta(content="i")]
    assert scripted_deltas(LlmResponse(None, (), "stop", Usage())) == []


def test_script_errors_propagate() -> None:
    def script(request: LlmRequest) -> LlmResponse:
        raise LlmRateLimited("scripted rate limit", retry_after_s=1.0)

    with pytest.raises(LlmRateLimited):
        asyncio.run(ScriptedLlm(script).complete(chat_request()))


def test_providers_give_the_scripted_model_for_any_config() -> None:
    providers = ScriptedProviders(lambda _: ANSWER)

    openai = providers.client_for(llm_config())
    anthropic = providers.client_for(llm_config(model_endpoint_type="anthropic"))

    assert openai is anthropic
    assert asyncio.run(openai.complete(chat_request())) == ANSWER

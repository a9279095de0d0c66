"""What both SDK clients promise through the LlmClient seam, run end to end against the
fake server: answers, tool calls, streaming, usage, and errors translated to LlmError."""

from __future__ import annotations

from typing import Final

import pytest

from kelpie.llm import (
    ChatMessage,
    LlmProviderFailed,
    LlmRateLimited,
    LlmTimeout,
    Provider,
    ToolCall,
    Usage,
)

from ._support import TIME_TOOL, WEATHER_TOOL, FakeLlm, Kind, assemble, chat_request, complete

KINDS: Final[tuple[Kind, ...]] = ("openai", "anthropic")
SHORT_TIMEOUT_S: Final = 0.3
SLOW_ANSWER_S: Final = 1.0
WEATHER_CALL: Final = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
TIME_CALL: Final = ToolCall("call_2", "get_time", '{"zone": "UTC"}')


def _entry(*calls: ToolCall, **fields: object) -> dict[str, object]:
    tool_calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
    return {"tool_calls": tool_calls, **fields}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> Kind:
    value: Kind = request.param
    return value


@pytest.fixture
def provider(fake_llm: FakeLlm, kind: Kind) -> Provider:
    return fake_llm.provider(kind)


class TestAnswers:
    def test_plain_reply(self, fake_llm: FakeLlm, provider: Provider) -> None:
        fake_llm.script({"content": "Hi there."})

        response, _ = complete(provider, chat_request())

        assert response.content == "Hi there."
        assert response.tool_calls == ()
        assert response.finish_reason == "stop"
        assert response.reasoning is None

    def test_empty_script_answers_ok(self, fake_llm: FakeLlm, provider: Provider) -> None:
        response, _ = complete(provider, chat_request())

        assert response.content == "OK"
        assert response.finish_reason == "stop"

    def test_single_tool_call(self, fake_llm: FakeLlm, provider: Provider) -> None:
        fake_llm.script(_entry(WEATHER_CALL))

        response, _ = complete(provider, chat_request(tools=(WEATHER_TOOL,)))

        assert response.tool_calls == (WEATHER_CALL,)
        assert response.finish_reason == "tool_calls"
        assert response.content is None

    def test_parallel_tool_calls_keep_their_order(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        fake_llm.script(_entry(WEATHER_CALL, TIME_CALL, content="Checking."))
        request = chat_request(tools=(WEATHER_TOOL, TIME_TOOL), parallel_tool_calls=True)

        response, _ = complete(provider, request)

        assert response.tool_calls == (WEATHER_CALL, TIME_CALL)
        assert response.content == "Checking."

    def test_usage_is_mapped_with_cached_and_reasoning_tokens(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        usage = {"prompt_tokens": 120, "completion_tokens": 30, "cached_tokens": 100}
        fake_llm.script({"content": "Hi.", "usage": usage | {"reasoning_tokens": 12}})

        response, _ = complete(provider, chat_request())

        assert response.usage == Usage(
            prompt_tokens=120,
            completion_tokens=30,
            total_tokens=150,
            cached_input_tokens=100,
            reasoning_tokens=12,
        )

    def test_reasoning_is_returned(self, fake_llm: FakeLlm, provider: Provider) -> None:
        fake_llm.script({"content": "42.", "reasoning": "Six times seven."})

        response, _ = complete(provider, chat_request())

        assert response.reasoning == "Six times seven."
        assert response.content == "42."

    def test_length_finish_reason(self, fake_llm: FakeLlm, provider: Provider) -> None:
        fake_llm.script({"content": "It was a dark and", "finish_reason": "length"})

        response, _ = complete(provider, chat_request())

        assert response.finish_reason == "length"

    def test_answer_with_neither_content_nor_calls_is_returned_as_is(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        fake_llm.script({"content": None, "reasoning": "Hmm."})

        response, _ = complete(provider, chat_request())

        assert response.content is None
        assert response.tool_calls == ()

    def test_entry_for_a_tool_waits_for_a_request_offering_it(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        fake_llm.script(_entry(TIME_CALL, when_tool="get_time"), {"content": "Plain."})

        without_tool, _ = complete(provider, chat_request(tools=(WEATHER_TOOL,)))
        with_tool, _ = complete(provider, chat_request(tools=(WEATHER_TOOL, TIME_TOOL)))
        after, _ = complete(provider, chat_request(tools=(TIME_TOOL,)))

        assert without_tool.content == "Plain."
        assert with_tool.tool_calls == (TIME_CALL,)
        assert after.content == "OK"


class TestStreaming:
    def test_deltas_and_response_match_the_unstreamed_answer(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        usage = {"prompt_tokens": 50, "completion_tokens": 20}
        entry = _entry(WEATHER_CALL, TIME_CALL, content="Let me look it up.", reasoning="Hm.")
        fake_llm.script(entry | {"usage": usage}, entry | {"usage": usage})
        request = chat_request(tools=(WEATHER_TOOL, TIME_TOOL), parallel_tool_calls=True)

        plain, _ = complete(provider, request)
        streamed, deltas = complete(provider, request, stream=True)

        assert streamed == plain
        assert assemble(deltas) == (plain.content, plain.reasoning, plain.tool_calls)

    def test_text_arrives_in_several_deltas(self, fake_llm: FakeLlm, provider: Provider) -> None:
        fake_llm.script({"content": "A fairly long answer, streamed in pieces."})

        response, deltas = complete(provider, chat_request(), stream=True)

        text_deltas = [d.content for d in deltas if d.content]
        assert len(text_deltas) > 1
        assert "".join(text_deltas) == response.content

    def test_tool_call_deltas_give_id_and_name_first(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        fake_llm.script(_entry(WEATHER_CALL))

        _, deltas = complete(provider, chat_request(tools=(WEATHER_TOOL,)), stream=True)

        tool_deltas = [d for d in deltas if d.tool_call_index is not None]
        assert tool_deltas[0].tool_call_id == "call_1"
        assert tool_deltas[0].tool_name == "get_weather"
        assert all(d.tool_call_index == 0 for d in tool_deltas)
        assert "".join(d.arguments or "" for d in tool_deltas) == WEATHER_CALL.arguments

    def test_streamed_usage_is_mapped(self, fake_llm: FakeLlm, provider: Provider) -> None:
        usage = {"prompt_tokens": 40, "completion_tokens": 5, "cached_tokens": 8}
        fake_llm.script({"content": "Hi.", "usage": usage})

        response, _ = complete(provider, chat_request(), stream=True)

        assert response.usage == Usage(40, 5, 45, cached_input_tokens=8)

    def test_dropped_stream_is_a_retryable_provider_failure(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        fake_llm.script({"content": "This answer is cut short.", "disconnect_after_events": 4})

        with pytest.raises(LlmProviderFailed) as caught:
            complete(provider, chat_request(), stream=True)

        assert caught.value.retryable
        assert "lost the connection" in caught.value.detail


class TestErrors:
    def test_rate_limit_keeps_retry_after(self, fake_llm: FakeLlm, provider: Provider) -> None:
        fake_llm.script({"error": {"status": 429, "message": "Slow down.", "retry_after": 7}})

        with pytest.raises(LlmRateLimited) as caught:
            complete(provider, chat_request())

        assert caught.value.retry_after_s == 7.0
        assert caught.value.retryable
        assert "Slow down." in caught.value.detail

    def test_rate_limit_without_retry_after(self, fake_llm: FakeLlm, provider: Provider) -> None:
        fake_llm.script({"error": {"status": 429, "message": "Slow down."}})

        with pytest.raises(LlmRateLimited) as caught:
            complete(provider, chat_request())

        assert caught.value.retry_after_s is None

    @pytest.mark.parametrize("status", [500, 503, 529])
    def test_server_error_is_retryable(
        self, fake_llm: FakeLlm, provider: Provider, status: int
    ) -> None:
        fake_llm.script({"error": {"status": status, "message": "Overloaded, try later."}})

        with pytest.raises(LlmProviderFailed) as caught:
            complete(provider, chat_request())

        assert caught.value.retryable
        assert f"HTTP {status}" in caught.value.detail
        assert "Overloaded, try later." in caught.value.detail

    @pytest.mark.parametrize("status", [400, 401, 404])
    def test_refused_request_is_not_retryable(
        self, fake_llm: FakeLlm, provider: Provider, status: int
    ) -> None:
        fake_llm.script({"error": {"status": status, "message": "No such model: fake-model"}})

        with pytest.raises(LlmProviderFailed) as caught:
            complete(provider, chat_request())

        assert not caught.value.retryable
        assert caught.value.detail.endswith(f"HTTP {status}: No such model: fake-model")

    def test_error_before_a_stream_is_translated(
        self, fake_llm: FakeLlm, provider: Provider
    ) -> None:
        fake_llm.script({"error": {"status": 429, "message": "Slow down.", "retry_after": 2}})

        with pytest.raises(LlmRateLimited) as caught:
            complete(provider, chat_request(), stream=True)

        assert caught.value.retry_after_s == 2.0

    @pytest.mark.parametrize("stream", [False, True])
    def test_slow_answer_times_out(
        self, fake_llm: FakeLlm, provider: Provider, stream: bool
    ) -> None:
        fake_llm.script({"content": "Too late.", "delay_s": SLOW_ANSWER_S})

        with pytest.raises(LlmTimeout) as caught:
            complete(provider, chat_request(), stream=stream, timeout_s=SHORT_TIMEOUT_S)

        assert caught.value.retryable
        assert f"{SHORT_TIMEOUT_S} s" in caught.value.detail

    def test_unreachable_server(self, kind: Kind, refused_url: str) -> None:
        base_url = refused_url if kind == "openai" else refused_url.removesuffix("/v1")
        provider = Provider(name=kind, kind=kind, base_url=base_url, api_key="sk-test")

        with pytest.raises(LlmProviderFailed) as caught:
            complete(provider, chat_request())

        assert caught.value.retryable
        assert caught.value.detail.startswith(f"cannot reach {base_url}: ")


def test_history_with_tool_results_round_trips(fake_llm: FakeLlm, provider: Provider) -> None:
    history = (
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "Weather in Oslo?"),
        ChatMessage("assistant", None, tool_calls=(WEATHER_CALL,)),
        ChatMessage("tool", '{"temp_c": 3}', tool_call_id="call_1"),
    )
    fake_llm.script({"content": "3 °C."})

    response, _ = complete(provider, chat_request(*history, tools=(WEATHER_TOOL,)))

    assert response.content == "3 °C."

"""The Chat Completions requests OpenAIClient sends, as the fake server received them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kelpie.llm import ChatMessage, HistoryEncodings, LlmProviderFailed, ToolCall

from ._support import TIME_TOOL, WEATHER_TOOL, FakeLlm, chat_request, complete


class TestRequestShape:
    def test_messages_of_every_role(self, fake_llm: FakeLlm) -> None:
        call = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
        history = (
            ChatMessage("system", "You are terse."),
            ChatMessage("user", "Weather in Oslo?"),
            ChatMessage("assistant", "Checking.", tool_calls=(call,)),
            ChatMessage("tool", '{"temp_c": 3}', tool_call_id="call_1"),
        )

        complete(fake_llm.provider("openai"), chat_request(*history, tools=(WEATHER_TOOL,)))

        assert fake_llm.last_body()["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 3}'},
        ]

    def test_a_message_is_encoded_once_and_its_bytes_sent_again(self, fake_llm: FakeLlm) -> None:
        kept = ChatMessage("user", "Hello \u00e9t\u00e9 \U0001f30a")
        provider = fake_llm.provider("openai")
        complete(provider, chat_request(kept))
        first = kept.encoded["openai"]
        assert fake_llm.last_body()["messages"] == [{"role": "user", "content": kept.content}]

        # The next request sends the kept bytes as they are, whatever they say.
        kept.encoded["openai"] = b'{"role":"user","content":"from the kept bytes"}'
        complete(provider, chat_request(kept, ChatMessage("assistant", "Hi")))

        assert first.decode() == '{"role":"user","content":"Hello \u00e9t\u00e9 \U0001f30a"}'
        assert fake_llm.last_body()["messages"] == [
            {"role": "user", "content": "from the kept bytes"},
            {"role": "assistant", "content": "Hi"},
        ]
        assert kept == ChatMessage("user", kept.content), "the encoding is not the message's value"

    def test_a_kept_history_is_joined_once_and_grows_by_what_was_added(
        self, fake_llm: FakeLlm
    ) -> None:
        provider, kept = fake_llm.provider("openai"), HistoryEncodings()
        system, first, second = (
            ChatMessage("system", "S"),
            ChatMessage("user", "a"),
            ChatMessage("assistant", "b"),
        )

        def sent(*messages: ChatMessage, history_len: int) -> list[Any]:
            request = dataclasses.replace(
                chat_request(*messages), history=kept, history_start=1, history_len=history_len
            )
            complete(provider, request)
            return [m["content"] for m in fake_llm.last_body()["messages"]]

        assert sent(system, first, second, ChatMessage("user", "c"), history_len=2) == [
            "S", "a", "b", "c"
        ]  # fmt: skip
        assert kept.joined["openai"][0] == 2
        # The join is kept: a history message's own bytes are not read again.
        first.encoded["openai"] = b'{"role":"user","content":"changed"}'
        third = ChatMessage("user", "c")
        assert sent(system, first, second, third, ChatMessage("assistant", "d"), history_len=3) == [
            "S", "a", "b", "c", "d"
        ]  # fmt: skip
        assert kept.joined["openai"][0] == 3
        # A history shorter than the one kept is not it: joined afresh.
        assert sent(system, first, history_len=1) == ["S", "changed"]

    def test_tools_choice_and_parallelism(self, fake_llm: FakeLlm) -> None:
        request = chat_request(
            tools=(WEATHER_TOOL, TIME_TOOL), tool_choice="required", parallel_tool_calls=True
        )

        complete(fake_llm.provider("openai"), request)

        body = fake_llm.last_body()
        assert body["tools"][0] == {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Looks up the weather.",
                "parameters": WEATHER_TOOL.parameters,
            },
        }
        assert [tool["function"]["name"] for tool in body["tools"]] == ["get_weather", "get_time"]
        assert body["tool_choice"] == "required"
        assert body["parallel_tool_calls"] is True

    def test_without_tools_no_tool_fields_are_sent(self, fake_llm: FakeLlm) -> None:
        request = chat_request(tool_choice="required", parallel_tool_calls=True)

        complete(fake_llm.provider("openai"), request)

        body = fake_llm.last_body()
        assert "tools" not in body
        assert "tool_choice" not in body
        assert "parallel_tool_calls" not in body

    def test_max_tokens_and_temperature_when_set(self, fake_llm: FakeLlm) -> None:
        complete(fake_llm.provider("openai"), chat_request(max_tokens=256, temperature=0.2))

        body = fake_llm.last_body()
        assert body["max_tokens"] == 256
        assert body["temperature"] == 0.2

    def test_unset_sampling_fields_are_left_to_the_server(self, fake_llm: FakeLlm) -> None:
        complete(fake_llm.provider("openai"), chat_request())

        body = fake_llm.last_body()
        assert "max_tokens" not in body
        assert "temperature" not in body

    def test_reasoning_models_get_max_completion_tokens_and_no_temperature(
        self, fake_llm: FakeLlm
    ) -> None:
        request = chat_request(model="o3-mini", max_tokens=256, temperature=0.7)

        complete(fake_llm.provider("openai"), request)

        body = fake_llm.last_body()
        assert body["max_completion_tokens"] == 256
        assert "max_tokens" not in body
        assert "temperature" not in body

    def test_streaming_asks_for_usage(self, fake_llm: FakeLlm) -> None:
        complete(fake_llm.provider("openai"), chat_request(), stream=True)

        body = fake_llm.last_body()
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}

    def test_api_key_is_sent_as_bearer(self, fake_llm: FakeLlm) -> None:
        complete(fake_llm.provider("openai"), chat_request())

        assert fake_llm.requests()[-1]["headers"]["authorization"] == "Bearer sk-test"


def test_error_event_in_a_stream_is_a_retryable_failure(fake_llm: FakeLlm) -> None:
    fake_llm.script({"content": "Cut short.", "stream_error": {"after_events": 2}})

    with pytest.raises(LlmProviderFailed) as caught:
        complete(fake_llm.provider("openai"), chat_request(), stream=True)

    assert caught.value.retryable


def test_malformed_arguments_reach_the_caller_untouched(fake_llm: FakeLlm) -> None:
    broken = {"id": "call_9", "name": "get_weather", "arguments": '{"city": "Os'}
    fake_llm.script({"tool_calls": [broken]})

    response, _ = complete(fake_llm.provider("openai"), chat_request(tools=(WEATHER_TOOL,)))

    assert response.tool_calls == (ToolCall("call_9", "get_weather", '{"city": "Os'),)

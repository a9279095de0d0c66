"""The Messages API requests AnthropicClient sends, as the fake server received them."""

from __future__ import annotations

from typing import Final

import pytest

from kelpie.llm import (
    ANTHROPIC_MAX_TOKENS_DEFAULT,
    ChatMessage,
    LlmProviderFailed,
    LlmRateLimited,
    ToolCall,
)

from ._support import TIME_TOOL, WEATHER_TOOL, FakeLlm, chat_request, complete

CALL: Final = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
OSLO: Final = {"city": "Oslo"}


class TestRequestShape:
    def test_system_messages_become_the_system_prompt(self, fake_llm: FakeLlm) -> None:
        history = (
            ChatMessage("system", "You are terse."),
            ChatMessage("system", "Today is Monday."),
            ChatMessage("user", "Hi."),
        )

        complete(fake_llm.provider("anthropic"), chat_request(*history))

        body = fake_llm.last_body()
        assert body["system"] == "You are terse.\n\nToday is Monday."
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi."}]}]

    def test_tool_use_and_results_are_blocks_and_same_roles_merge(self, fake_llm: FakeLlm) -> None:
        second = ToolCall("call_2", "get_time", "{}")
        history = (
            ChatMessage("system", "You are terse."),
            ChatMessage("user", "Weather and time in Oslo?"),
            ChatMessage("assistant", "Checking.", tool_calls=(CALL, second)),
            ChatMessage("tool", '{"temp_c": 3}', tool_call_id="call_1"),
            ChatMessage("tool", "09:00", tool_call_id="call_2"),
            ChatMessage("user", "Thanks."),
        )

        complete(fake_llm.provider("anthropic"), chat_request(*history, tools=(WEATHER_TOOL,)))

        assert fake_llm.last_body()["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "Weather and time in Oslo?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                    {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp_c": 3}'},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "09:00"},
                    {"type": "text", "text": "Thanks."},
                ],
            },
        ]

    def test_later_system_message_stays_in_place_as_user_text(self, fake_llm: FakeLlm) -> None:
        history = (
            ChatMessage("system", "You are terse."),
            ChatMessage("user", "Hi."),
            ChatMessage("assistant", "Hello."),
            ChatMessage("system", "Summary: the user greeted you."),
        )

        complete(fake_llm.provider("anthropic"), chat_request(*history))

        body = fake_llm.last_body()
        assert body["system"] == "You are terse."
        assert body["messages"][-1] == {
            "role": "user",
            "content": [{"type": "text", "text": "Summary: the user greeted you."}],
        }

    def test_malformed_arguments_in_history_are_sent_as_an_empty_input(
        self, fake_llm: FakeLlm
    ) -> None:
        broken = ToolCall("call_1", "get_weather", '{"city": "Os')
        history = (
            ChatMessage("user", "Weather?"),
            ChatMessage("assistant", None, tool_calls=(broken,)),
            ChatMessage("tool", "error: arguments are not valid JSON", tool_call_id="call_1"),
        )

        complete(fake_llm.provider("anthropic"), chat_request(*history, tools=(WEATHER_TOOL,)))

        assistant = fake_llm.last_body()["messages"][1]
        assert assistant["content"][0]["input"] == {}

    def test_tools_and_choice(self, fake_llm: FakeLlm) -> None:
        request = chat_request(tools=(WEATHER_TOOL, TIME_TOOL), tool_choice="required")

        complete(fake_llm.provider("anthropic"), request)

        body = fake_llm.last_body()
        assert body["tools"][0] == {
            "name": "get_weather",
            "description": "Looks up the weather.",
            "input_schema": WEATHER_TOOL.parameters,
        }
        assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    def test_parallel_calls_allowed(self, fake_llm: FakeLlm) -> None:
        request = chat_request(tools=(WEATHER_TOOL,), parallel_tool_calls=True)

        complete(fake_llm.provider("anthropic"), request)

        assert fake_llm.last_body()["tool_choice"] == {
            "type": "auto",
            "disable_parallel_tool_use": False,
        }

    def test_tool_choice_none(self, fake_llm: FakeLlm) -> None:
        complete(
            fake_llm.provider("anthropic"), chat_request(tools=(WEATHER_TOOL,), tool_choice="none")
        )

        assert fake_llm.last_body()["tool_choice"] == {"type": "none"}

    def test_without_tools_no_tool_fields_are_sent(self, fake_llm: FakeLlm) -> None:
        request = chat_request(tool_choice="required", parallel_tool_calls=True)

        complete(fake_llm.provider("anthropic"), request)

        body = fake_llm.last_body()
        assert "tools" not in body
        assert "tool_choice" not in body

    def test_max_tokens_defaults_and_temperature_is_never_sent(self, fake_llm: FakeLlm) -> None:
        complete(fake_llm.provider("anthropic"), chat_request(temperature=0.7))

        body = fake_llm.last_body()
        assert body["max_tokens"] == ANTHROPIC_MAX_TOKENS_DEFAULT
        assert "temperature" not in body

    def test_max_tokens_from_config(self, fake_llm: FakeLlm) -> None:
        complete(fake_llm.provider("anthropic"), chat_request(max_tokens=300))

        assert fake_llm.last_body()["max_tokens"] == 300


class TestErrorEventsInAStream:
    """Anthropic reports failures that happen after a 200 as an `error` event."""

    def test_overloaded_is_retryable(self, fake_llm: FakeLlm) -> None:
        fake_llm.script({"stream_error": {"after_events": 3, "type": "overloaded_error"}})

        with pytest.raises(LlmProviderFailed) as caught:
            complete(fake_llm.provider("anthropic"), chat_request(), stream=True)

        assert caught.value.retryable
        assert "overloaded_error" in caught.value.detail

    def test_rate_limit(self, fake_llm: FakeLlm) -> None:
        fake_llm.script({"stream_error": {"type": "rate_limit_error", "message": "Slow down."}})

        with pytest.raises(LlmRateLimited):
            complete(fake_llm.provider("anthropic"), chat_request(), stream=True)

    def test_invalid_request_is_not_retryable(self, fake_llm: FakeLlm) -> None:
        fake_llm.script({"stream_error": {"type": "invalid_request_error", "message": "No."}})

        with pytest.raises(LlmProviderFailed) as caught:
            complete(fake_llm.provider("anthropic"), chat_request(), stream=True)

        assert not caught.value.retryable

"""Streaming turns (step and token mode, `/messages/stream`, the SSE framing), model
errors in JSON and SSE turns, and request validation of `agents.messages.create`
(letta-api.md §1.4, §2.5, §2.6, §2.11, §2.12)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from letta_client import (
    APIStatusError,
    BadRequestError,
    Letta,
    NotFoundError,
    UnprocessableEntityError,
)
from letta_client.types import ToolReturnMessage
from letta_client.types.agents import AssistantMessage, ToolCallMessage, UserMessage
from letta_client.types.agents.letta_streaming_response import (
    LettaPing,
    LettaStopReason,
    LettaStreamingResponse,
    LettaUsageStatistics,
)

from ._support import (
    ScriptedLlm,
    calling,
    error_detail,
    is_id,
    model_messages,
    new_agent,
    reply,
    tool_call,
)

MISSING_AGENT = "agent-00000000-0000-4000-8000-000000000000"
# More failures than the server makes attempts, so its retries run out.
MODEL_FAILURES = 6
HELLO: Any = [{"role": "user", "content": "Hello"}]


def without_pings(chunks: Iterable[LettaStreamingResponse]) -> list[LettaStreamingResponse]:
    return [chunk for chunk in chunks if chunk.message_type != "ping"]


def model_failures(status: int = 500) -> list[dict[str, object]]:
    return [{"error": {"status": status, "message": "scripted outage"}}] * MODEL_FAILURES


class TestStepStreaming:
    def test_complete_messages_then_stop_reason_and_usage(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(calling(tool_call("memory_insert", insert)), reply("Noted."))

        stream = client.agents.messages.create(agent.id, messages=HELLO, streaming=True)
        chunks = without_pings(stream)

        assert [c.message_type for c in chunks] == [
            "tool_call_message",
            "tool_return_message",
            "assistant_message",
            "stop_reason",
            "usage_statistics",
        ]
        call, returned, final, stop, usage = chunks
        assert isinstance(call, ToolCallMessage)
        assert isinstance(returned, ToolReturnMessage)
        assert returned.status == "success", returned.tool_return
        assert call.tool_call.name == "memory_insert"
        assert call.tool_call.arguments is not None
        assert json.loads(call.tool_call.arguments) == insert
        assert isinstance(final, AssistantMessage)
        assert final.content == "Noted."
        assert isinstance(stop, LettaStopReason)
        assert stop.stop_reason == "end_turn"
        assert isinstance(usage, LettaUsageStatistics)
        assert usage.step_count == 2
        assert usage.run_ids is not None
        assert len(usage.run_ids) == 1
        assert is_id("run", usage.run_ids[0])
        assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == (
            "Name: Ada\nLikes tea"
        )
        listed = client.agents.messages.list(agent.id, order="asc").items
        streamed = [(c.id, c.message_type) for c in (call, returned, final)]
        assert [(m.id, m.message_type) for m in listed[-3:]] == streamed

    def test_pings_are_pings_with_a_date(self, client: Letta, script: ScriptedLlm) -> None:
        # §2.5: ping = {id:"ping-…", date, run_id}; §0: dates are ISO-8601 with a timezone.
        agent = new_agent(client)
        script.enqueue(reply("Hi"))

        chunks = list(client.agents.messages.create(agent.id, messages=HELLO, streaming=True))

        pings = [chunk for chunk in chunks if chunk.message_type == "ping"]
        usage = chunks[-1]
        assert isinstance(usage, LettaUsageStatistics)
        assert usage.run_ids is not None
        for ping in pings:
            assert isinstance(ping, LettaPing), f"a ping parsed as {type(ping).__name__}"
            assert ping.date.tzinfo is not None
            assert ping.run_id == usage.run_ids[0]

    def test_include_pings_false_sends_no_pings(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Hi"))

        chunks = list(
            client.agents.messages.create(
                agent.id, messages=HELLO, streaming=True, include_pings=False
            )
        )

        assert [c.message_type for c in chunks] == [
            "assistant_message",
            "stop_reason",
            "usage_statistics",
        ]

    def test_stream_endpoint_streams_the_turn(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Streamed hello"))

        with pytest.deprecated_call():
            stream = client.agents.messages.stream(agent.id, messages=HELLO)
        chunks = without_pings(stream)

        assert [c.message_type for c in chunks] == [
            "assistant_message",
            "stop_reason",
            "usage_statistics",
        ]
        final = chunks[0]
        assert isinstance(final, AssistantMessage)
        assert final.content == "Streamed hello"

    def test_sse_framing_is_unnamed_data_events_ending_with_done(
        self, http: httpx.Client, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Framed"))
        body = {"messages": HELLO, "streaming": True}

        with http.stream("POST", f"/v1/agents/{agent.id}/messages", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            text = response.read().decode()

        events = [event for event in text.replace("\r\n", "\n").split("\n\n") if event.strip()]
        assert events[-1] == "data: [DONE]"
        for event in events:
            assert event.startswith("data: "), f"not an unnamed data event: {event!r}"
            assert "\nevent:" not in event
        payloads = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
        assert [p["message_type"] for p in payloads if p["message_type"] != "ping"] == [
            "assistant_message",
            "stop_reason",
            "usage_statistics",
        ]


class TestTokenStreaming:
    def test_text_arrives_in_pieces_of_one_message(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        text = "Hello there, friend! How are you today?"
        script.enqueue(reply(text))

        chunks = without_pings(
            client.agents.messages.create(
                agent.id, messages=HELLO, streaming=True, stream_tokens=True
            )
        )

        pieces = [c for c in chunks if isinstance(c, AssistantMessage)]
        assert len(pieces) >= 2, "the reply was not streamed in pieces"
        assert len({piece.id for piece in pieces}) == 1
        assert len({piece.otid for piece in pieces}) == 1
        assert "".join(str(piece.content) for piece in pieces) == text
        assert [c.message_type for c in chunks[len(pieces) :]] == [
            "stop_reason",
            "usage_statistics",
        ]
        listed = client.agents.messages.list(agent.id, order="asc").items
        stored = listed[-1]
        assert isinstance(stored, AssistantMessage)
        assert (stored.id, stored.otid, stored.content) == (pieces[0].id, pieces[0].otid, text)

    def test_tool_call_arguments_arrive_in_pieces(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
        insert = {"label": "human", "new_string": "Prefers long walks on the beach"}
        call = tool_call("memory_insert", insert)
        script.enqueue(calling(call), reply("Done."))

        chunks = without_pings(
            client.agents.messages.create(
                agent.id, messages=HELLO, streaming=True, stream_tokens=True
            )
        )

        calls = [c for c in chunks if isinstance(c, ToolCallMessage)]
        assert len(calls) >= 2, "the tool call was not streamed in pieces"
        assert len({c.id for c in calls}) == 1
        assert len({c.otid for c in calls}) == 1
        assert calls[0].tool_call.name == "memory_insert"
        # Every piece names its call: letta-code drops pieces without a tool_call_id.
        assert [c.tool_call.tool_call_id for c in calls] == [call["id"]] * len(calls)
        arguments = "".join(c.tool_call.arguments or "" for c in calls)
        assert json.loads(arguments) == insert
        kinds = [c.message_type for c in chunks if c.message_type != "tool_call_message"]
        assert kinds[0] == "tool_return_message"
        assert kinds[-2:] == ["stop_reason", "usage_statistics"]


class TestModelErrors:
    def test_json_turn_stops_with_llm_api_error_and_a_failed_run(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(*model_failures())

        response = client.agents.messages.create(agent.id, messages=HELLO)

        assert response.stop_reason.stop_reason == "llm_api_error"
        assert [m.message_type for m in response.messages] == []
        assert 2 <= len(script.requests()) < MODEL_FAILURES, "no retries, or no end to them"
        assert response.usage.run_ids is not None
        run = client.runs.retrieve(response.usage.run_ids[0])
        assert run.status == "failed"
        assert run.stop_reason == "llm_api_error"
        assert run.metadata is not None
        error = run.metadata["error"]
        assert isinstance(error, dict)
        assert error["error_type"] == "llm_error"
        assert "scripted outage" in error["message"]

    def test_sse_turn_raises_the_error_event(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(*model_failures())
        seen: list[LettaStreamingResponse] = []

        stream = client.agents.messages.create(agent.id, messages=HELLO, streaming=True)
        with pytest.raises(APIStatusError) as raised:
            seen.extend(stream)

        body = raised.value.body
        assert isinstance(body, dict)
        assert body["message_type"] == "error_message"
        assert body["error_type"] == "llm_error"
        assert is_id("run", body["run_id"])
        stops = [c for c in seen if isinstance(c, LettaStopReason)]
        assert [s.stop_reason for s in stops] == ["llm_api_error"]
        run = client.runs.retrieve(body["run_id"])
        assert run.status == "failed"
        assert run.metadata is not None
        error = run.metadata["error"]
        assert isinstance(error, dict)
        assert error["error_type"] == "llm_error"


class TestRequestValidation:
    def test_input_shortcut_is_one_user_message(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Hi yourself"))

        response = client.agents.messages.create(agent.id, input="hi")

        assert [m.message_type for m in response.messages] == ["assistant_message"]
        sent = model_messages(script.requests()[0])[-1]
        assert (sent["role"], sent["content"]) == ("user", "hi")
        listed = client.agents.messages.list(agent.id, order="asc").items
        assert [m.content for m in listed if isinstance(m, UserMessage)] == ["hi"]

    def test_empty_messages_is_422(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)

        with pytest.raises(UnprocessableEntityError) as raised:
            client.agents.messages.create(agent.id, messages=[])

        assert "Messages must not be empty" in str(error_detail(raised.value))
        assert script.requests() == []

    def test_input_and_messages_together_is_422(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)

        with pytest.raises(UnprocessableEntityError):
            client.agents.messages.create(agent.id, input="hi", messages=HELLO)

        assert script.requests() == []

    def test_neither_input_nor_messages_is_refused(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)

        with pytest.raises((BadRequestError, UnprocessableEntityError)):
            client.agents.messages.create(agent.id)

        assert script.requests() == []

    @pytest.mark.parametrize(
        "flags",
        [{"stream_tokens": True}, {"background": True}, {"include_pings": False}],
        ids=["stream_tokens", "background", "include_pings"],
    )
    def test_streaming_flags_without_streaming_are_422(
        self, http: httpx.Client, client: Letta, script: ScriptedLlm, flags: dict[str, bool]
    ) -> None:
        agent = new_agent(client)

        response = http.post(f"/v1/agents/{agent.id}/messages", json={"messages": HELLO, **flags})

        assert response.status_code == 422, response.text
        assert script.requests() == []
        assert client.runs.list(agent_id=agent.id).items == []

    def test_stream_tokens_without_streaming_through_the_sdk(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)

        with pytest.raises(UnprocessableEntityError):
            client.agents.messages.create(agent.id, messages=HELLO, stream_tokens=True)

        assert script.requests() == []

    def test_unknown_agent_is_404(self, client: Letta, script: ScriptedLlm) -> None:
        with pytest.raises(NotFoundError):
            client.agents.messages.create(MISSING_AGENT, messages=HELLO)
        with pytest.raises(NotFoundError):
            client.agents.messages.create(MISSING_AGENT, messages=HELLO, streaming=True)
        with pytest.raises(NotFoundError):
            client.agents.messages.list(MISSING_AGENT)

        assert script.requests() == []

    def test_malformed_agent_id_is_422(self, client: Letta, script: ScriptedLlm) -> None:
        with pytest.raises(UnprocessableEntityError) as raised:
            client.agents.messages.create("not-an-agent", messages=HELLO)

        assert "String should match pattern" in str(error_detail(raised.value))
        assert script.requests() == []

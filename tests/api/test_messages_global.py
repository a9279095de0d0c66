"""Messages by id and across agents: `messages.retrieve` (letta-code retrieves the system
message by id) and `messages.list` (letta-api.md §1.4, §2.5)."""

from __future__ import annotations

import httpx
import pytest
from letta_client import BadRequestError, Letta, NotFoundError, UnprocessableEntityError
from letta_client.types.agents import SystemMessage, UserMessage

from ._support import ScriptedLlm, calling, error_detail, new_agent, reply, tool_call

MISSING_MESSAGE = "message-00000000-0000-4000-8000-000000000000"


class TestRetrieve:
    def test_system_message_by_id(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
        [system_id] = agent.message_ids or []

        [item] = client.messages.retrieve(system_id)

        assert isinstance(item, SystemMessage)
        assert item.id == system_id
        assert "Name: Ada" in item.content

    def test_a_message_expands_to_every_item_it_shows_as(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(calling(tool_call("memory_insert", insert), content="Noting."), reply("Ok"))
        client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "Tea!"}])
        listed = client.agents.messages.list(agent.id, order="asc").items
        call_id = next(item.id for item in listed if item.message_type == "tool_call_message")

        items = client.messages.retrieve(call_id)

        assert [item.message_type for item in items] == ["assistant_message", "tool_call_message"]
        assert {item.id for item in items} == {call_id}
        assert [item.model_dump() for item in items] == [
            item.model_dump() for item in listed if item.id == call_id
        ]

    def test_unknown_message_is_not_found(self, client: Letta) -> None:
        with pytest.raises(NotFoundError) as caught:
            client.messages.retrieve(MISSING_MESSAGE)
        assert error_detail(caught.value) == f"Message {MISSING_MESSAGE} not found"

    def test_malformed_id_is_unprocessable(self, client: Letta) -> None:
        with pytest.raises(UnprocessableEntityError):
            client.messages.retrieve("message-1")


class TestList:
    def test_lists_messages_of_every_agent_newest_first(self, client: Letta) -> None:
        first = new_agent(client)
        second = new_agent(client)

        items = client.messages.list(limit=2)

        assert [item.id for item in items] == [
            (second.message_ids or [])[0],
            (first.message_ids or [])[0],
        ]

    def test_cursor_pages_forward(self, client: Letta) -> None:
        first = new_agent(client)
        second = new_agent(client)
        first_id, second_id = (first.message_ids or [])[0], (second.message_ids or [])[0]

        page = client.messages.list(after=first_id, order="asc", limit=1)

        assert [item.id for item in page] == [second_id]

    def test_type_filter(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Hello"))
        client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "Hi!"}])

        items = client.messages.list(limit=3, include_return_message_types=["user_message"])

        [item] = items
        assert isinstance(item, UserMessage)
        assert item.content == "Hi!"

    def test_default_conversation_is_refused(self, client: Letta) -> None:
        with pytest.raises(BadRequestError) as caught:
            client.messages.list(conversation_id="default")
        assert "GET /v1/agents/{agent_id}/messages" in str(error_detail(caught.value))

    def test_answers_both_slash_forms(self, http: httpx.Client) -> None:
        for path in ("/v1/messages", "/v1/messages/"):
            response = http.get(path, params={"limit": 1})
            assert response.status_code == 200, path
            assert isinstance(response.json(), list)

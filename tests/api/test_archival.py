"""Archival and recall memory through the API with letta-client: an agent's passages,
shared archives, passage search and message search (letta-api.md §1.8), and the search
tools through scripted model calls (§3.3). The server runs the local embedding model."""

from __future__ import annotations

import json

import httpx
import pytest
from letta_client import APIStatusError, Letta, NotFoundError
from letta_client.types import ToolReturnMessage
from letta_client.types.message_search_response import (
    MessageSearchResponseItemUserMessageListResult,
)

from ._support import ScriptedLlm, calling, error_detail, new_agent, reply, tool_call, unique

FACTS = [
    "Maya's brother Theo studies octopuses in Lisbon.",
    "Maya is allergic to peanuts.",
    "Maya plays the cello in an orchestra on Tuesdays.",
]


def _contents(client: Letta, agent_id: str, query: str, **kwargs: object) -> list[str]:
    found = client.agents.passages.search(agent_id, query=query, **kwargs)  # type: ignore[arg-type]  # SDK keyword arguments passed through
    assert found.count == len(found.results)
    return [result.content for result in found.results]


class TestAgentArchivalMemory:
    def test_create_list_search_delete(self, client: Letta) -> None:
        agent = new_agent(client)
        created = [client.agents.passages.create(agent.id, text=fact)[0] for fact in FACTS]
        assert [p.text for p in created] == FACTS
        assert all(p.archive_id and p.archive_id.startswith("archive-") for p in created)

        listed = client.agents.passages.list(agent.id)
        assert [p.id for p in listed] == [p.id for p in created]

        assert _contents(client, agent.id, "Which sibling works with sea creatures?", top_k=1) == [
            FACTS[0]
        ]
        assert _contents(client, agent.id, "What instrument does she play?")[0] == FACTS[2]

        first_id = created[0].id
        assert first_id is not None
        client.agents.passages.delete(first_id, agent_id=agent.id)
        assert FACTS[0] not in _contents(client, agent.id, "octopus research", top_k=10)
        with pytest.raises(NotFoundError):
            client.agents.passages.delete(first_id, agent_id=agent.id)

    def test_search_filters_by_tags_before_top_k(self, client: Letta) -> None:
        agent = new_agent(client)
        client.agents.passages.create(agent.id, text="Dinner at the Georgian place", tags=["food"])
        client.agents.passages.create(agent.id, text="Lunch with Priya", tags=["food", "friends"])
        client.agents.passages.create(agent.id, text="Dinner plans for Friday", tags=["plans"])

        any_food = _contents(client, agent.id, "dinner", tags=["food"], top_k=5)
        all_tags = _contents(
            client, agent.id, "dinner", tags=["food", "friends"], tag_match_mode="all"
        )

        assert sorted(any_food) == ["Dinner at the Georgian place", "Lunch with Priya"]
        assert all_tags == ["Lunch with Priya"]

    def test_list_pages_and_searches_text(self, client: Letta) -> None:
        agent = new_agent(client)
        for n in range(5):
            client.agents.passages.create(agent.id, text=f"entry {n}")
        first = client.agents.passages.list(agent.id, limit=2)
        rest = client.agents.passages.list(agent.id, after=first[-1].id, limit=10)
        newest = client.agents.passages.list(agent.id, ascending=False, limit=1)

        assert [p.text for p in [*first, *rest]] == [f"entry {n}" for n in range(5)]
        assert [p.text for p in newest] == ["entry 4"]
        assert [p.text for p in client.agents.passages.list(agent.id, search="y 3")] == ["entry 3"]

    def test_unknown_agent_is_404_and_bad_input_422(
        self, client: Letta, http: httpx.Client
    ) -> None:
        missing = "agent-00000000-0000-4000-8000-000000000000"
        with pytest.raises(NotFoundError):
            client.agents.passages.create(missing, text="x")
        agent = new_agent(client)
        for response in (
            http.get(f"/v1/agents/{agent.id}/archival-memory/search"),
            http.post(f"/v1/agents/{agent.id}/archival-memory", json={"text": ""}),
            http.get(f"/v1/agents/{agent.id}/archival-memory/search?query=x&top_k=0"),
            http.delete(f"/v1/agents/{agent.id}/archival-memory/not-a-passage"),
        ):
            assert response.status_code == 422, response.text
            assert response.json()["detail"]


class TestArchives:
    def test_crud_and_passages(self, client: Letta) -> None:
        name = unique("archive")
        archive = client.archives.create(name=name, description="shared notes")
        assert client.archives.retrieve(archive.id).name == name
        renamed = client.archives.update(archive.id, name=f"{name}-2")
        assert renamed.name == f"{name}-2"
        assert archive.id in [a.id for a in client.archives.list(name=f"{name}-2")]

        one = client.archives.passages.create(archive.id, text="The ferry leaves at nine.")
        many = client.archives.passages.create_many(
            archive.id, passages=[{"text": "Tickets cost 12 euros."}, {"text": "Bring a coat."}]
        )
        assert one.archive_id == archive.id
        assert len(many) == 2
        assert many[1].id is not None
        client.archives.passages.delete(many[1].id, archive_id=archive.id)

        found = client.passages.search(archive_id=archive.id, query="boat departure time")
        assert [hit.passage.text for hit in found][:2] == [
            "The ferry leaves at nine.",
            "Tickets cost 12 euros.",
        ]
        assert all(hit.score > 0 for hit in found)

        client.archives.delete(archive.id)
        with pytest.raises(NotFoundError):
            client.archives.retrieve(archive.id)

    def test_attached_archive_is_searched_by_the_agent(self, client: Letta) -> None:
        agent = new_agent(client)
        archive = client.archives.create(name=unique("shared"))
        client.archives.passages.create(archive.id, text="The office wifi password is kelp42.")

        client.agents.archives.attach(archive.id, agent_id=agent.id)
        attached = _contents(client, agent.id, "wifi password")
        by_agent = client.passages.search(agent_id=agent.id, query="wifi password")
        listed = [a.id for a in client.archives.list(agent_id=agent.id)]
        client.agents.archives.detach(archive.id, agent_id=agent.id)

        assert attached == ["The office wifi password is kelp42."]
        assert [hit.passage.text for hit in by_agent] == attached
        assert archive.id in listed
        assert _contents(client, agent.id, "wifi password") == []

    def test_passage_search_needs_exactly_one_scope(self, client: Letta) -> None:
        with pytest.raises(APIStatusError) as raised:
            client.passages.search(query="x")
        assert raised.value.status_code == 400
        assert "agent_id or archive_id" in str(error_detail(raised.value))


class TestMessageSearch:
    def test_finds_what_the_user_said_by_meaning(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Noted."), reply("Sure."))
        client.agents.messages.create(agent.id, input="My sister Priya runs a bakery in Toronto.")
        client.agents.messages.create(agent.id, input="The weather is nice today.")

        found = client.messages.search(query="Who bakes bread in Canada?", agent_id=agent.id)
        keyword = client.messages.search(query="Priya", agent_id=agent.id, search_mode="fts")

        top = found[0]
        assert isinstance(top, MessageSearchResponseItemUserMessageListResult), top
        assert top.content == "My sister Priya runs a bakery in Toronto."
        assert top.agent_id == agent.id
        assert [getattr(m, "content", None) for m in keyword] == [top.content]

    def test_unknown_agent_is_404(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.messages.search(query="x", agent_id="agent-00000000-0000-4000-8000-000000000000")


class TestSearchTools:
    def test_archival_search_tool_filters_by_tag(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, tools=["archival_memory_insert", "archival_memory_search"])
        script.enqueue(
            calling(
                tool_call("archival_memory_insert", {"content": "Gym on Mondays", "tags": ["a"]}),
                tool_call("archival_memory_insert", {"content": "Gym on Fridays", "tags": ["b"]}),
            ),
            calling(tool_call("archival_memory_search", {"query": "gym day", "tags": ["b"]})),
            reply("Fridays."),
        )

        response = client.agents.messages.create(agent.id, input="When is the gym?")

        returns = [m for m in response.messages if isinstance(m, ToolReturnMessage)]
        assert [r.status for r in returns] == ["success"] * 3
        results = json.loads(returns[-1].tool_return)
        assert [(r["content"], r["tags"]) for r in results] == [("Gym on Fridays", ["b"])]

    def test_conversation_search_tool_finds_an_earlier_turn_by_meaning(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(
            reply("Noted."),
            calling(tool_call("conversation_search", {"query": "which pet does the user own"})),
            reply("A cat."),
        )
        client.agents.messages.create(agent.id, input="I adopted a grey cat called Pistachio.")

        response = client.agents.messages.create(agent.id, input="Remind me about my animal")

        found = next(m for m in response.messages if isinstance(m, ToolReturnMessage))
        results = json.loads(found.tool_return)
        assert results[0]["content"] == "I adopted a grey cat called Pistachio."
        assert "Remind me about my animal" not in found.tool_return

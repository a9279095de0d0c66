"""Standalone blocks, an agent's core memory, and blocks shared between agents
(letta-api.md §1.3, §2.2, §3.7)."""

from __future__ import annotations

import httpx
import pytest
from letta_client import APIStatusError, Letta, NotFoundError, UnprocessableEntityError

from ._support import error_detail, is_id, new_agent, stored_system_text, unique

BLOCK_LIMIT_DEFAULT = 100_000
PAGE_ALL = 1_000
BLOCKS_LIMIT_DEFAULT = 50


class TestCreateBlock:
    def test_fields_round_trip(self, client: Letta) -> None:
        label = unique("notes")

        block = client.blocks.create(
            label=label,
            value="Remember the milk.",
            description="Shopping notes",
            limit=500,
            metadata={"source": "test"},
        )

        assert is_id("block", block.id), block.id
        assert block.label == label
        assert block.value == "Remember the milk."
        assert block.description == "Shopping notes"
        assert block.limit == 500
        assert block.metadata == {"source": "test"}
        assert block.read_only is False
        fetched = client.blocks.retrieve(block.id)
        assert fetched.id == block.id
        assert (fetched.label, fetched.value, fetched.limit) == (label, "Remember the milk.", 500)
        assert fetched.description == "Shopping notes"

    def test_limit_defaults_to_one_hundred_thousand(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("default-limit"), value="v")

        assert block.limit == BLOCK_LIMIT_DEFAULT
        assert client.blocks.retrieve(block.id).limit == BLOCK_LIMIT_DEFAULT

    def test_tags_read_only_and_hidden_round_trip(self, client: Letta) -> None:
        tags = [unique("btag-a"), unique("btag-b")]

        block = client.blocks.create(
            label=unique("flags"), value="v", tags=tags, read_only=True, hidden=True
        )

        fetched = client.blocks.retrieve(block.id)
        assert sorted(fetched.tags or []) == sorted(tags)
        assert fetched.read_only is True
        assert fetched.hidden is True

    def test_null_bytes_are_stripped_from_the_value(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("nul"), value="a\x00b")

        assert block.value == "ab"
        assert client.blocks.retrieve(block.id).value == "ab"

    def test_value_at_exactly_the_limit_is_accepted(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("edge"), value="x" * 10, limit=10)

        assert block.value == "x" * 10


class TestUpdateBlock:
    def test_value_and_description_persist(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("upd"), value="before", description="d1")

        updated = client.blocks.update(block.id, value="after", description="d2")

        assert updated.id == block.id
        assert updated.value == "after"
        fetched = client.blocks.retrieve(block.id)
        assert fetched.value == "after"
        assert fetched.description == "d2"
        assert fetched.label == block.label

    def test_over_limit_value_is_rejected_and_nothing_changes(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("small"), value="short", limit=10)

        with pytest.raises(UnprocessableEntityError) as caught:
            client.blocks.update(block.id, value="testing testing testing")

        assert "Exceeds 10 character limit" in str(error_detail(caught.value))
        assert client.blocks.retrieve(block.id).value == "short"

    def test_limit_below_the_current_value_is_rejected(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("shrink"), value="twelve chars", limit=100)

        # Letta answered 400 from its block manager; letta-api.md §3.7 recommends 422.
        with pytest.raises(APIStatusError) as caught:
            client.blocks.update(block.id, limit=5)

        assert caught.value.status_code in (400, 422)
        error_detail(caught.value)
        fetched = client.blocks.retrieve(block.id)
        assert (fetched.value, fetched.limit) == ("twelve chars", 100)

    def test_raising_the_limit_then_a_longer_value_is_accepted(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("grow"), value="short", limit=10)

        client.blocks.update(block.id, limit=50)
        updated = client.blocks.update(block.id, value="testing testing testing")

        assert updated.value == "testing testing testing"
        assert client.blocks.retrieve(block.id).limit == 50

    def test_unknown_block_is_not_found(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.blocks.update("block-00000000-0000-4000-8000-000000000000", value="x")


class TestDeleteBlock:
    def test_deleted_block_is_gone(self, client: Letta) -> None:
        label = unique("doomed")
        block = client.blocks.create(label=label, value="bye")

        client.blocks.delete(block.id)

        with pytest.raises(NotFoundError):
            client.blocks.retrieve(block.id)
        assert client.blocks.list(label=label).items == []

    def test_deleting_an_attached_block_detaches_it(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("attached"), value="bye")
        agent = new_agent(
            client, memory_blocks=[{"label": "human", "value": "Ada"}], block_ids=[block.id]
        )

        client.blocks.delete(block.id)

        assert {b.label for b in client.agents.blocks.list(agent.id).items} == {"human"}
        fetched = client.agents.retrieve(agent.id, include=["agent.blocks"])
        assert [b.label for b in fetched.blocks] == ["human"]

    def test_second_delete_is_not_found(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("twice"), value="bye")
        client.blocks.delete(block.id)

        with pytest.raises(NotFoundError):
            client.blocks.delete(block.id)


class TestListBlocks:
    def test_label_filter_is_exact(self, client: Letta) -> None:
        label = unique("filter")
        wanted = {client.blocks.create(label=label, value=f"v{i}").id for i in range(3)}
        client.blocks.create(label=f"{label}-other", value="no")

        found = client.blocks.list(label=label, limit=PAGE_ALL).items

        assert {block.id for block in found} == wanted
        assert {block.label for block in found} == {label}

    def test_limit_caps_the_page_and_auto_paging_visits_all(self, client: Letta) -> None:
        label = unique("paged")
        created = [client.blocks.create(label=label, value=f"v{i}").id for i in range(5)]

        first_page = client.blocks.list(label=label, limit=2)
        seen: list[str] = []
        for block in client.blocks.list(label=label, limit=2):
            seen.append(block.id)
            assert len(seen) <= len(created), "auto-paging did not stop: `after` ignored?"

        assert len(first_page.items) == 2
        assert sorted(seen) == sorted(created)

    def test_label_search_matches_a_substring(self, client: Letta) -> None:
        marker = unique("ls")
        first = client.blocks.create(label=f"alpha-{marker}", value="v")
        second = client.blocks.create(label=f"beta-{marker}", value="v")

        found = client.blocks.list(label_search=marker, limit=PAGE_ALL).items

        assert sorted(block.id for block in found) == sorted([first.id, second.id])

    def test_value_search_matches_a_substring(self, client: Letta) -> None:
        marker = unique("vs")
        wanted = client.blocks.create(label=unique("vs"), value=f"before {marker} after")
        client.blocks.create(label=unique("vs"), value="unrelated")

        found = client.blocks.list(value_search=marker, limit=PAGE_ALL).items

        assert [block.id for block in found] == [wanted.id]

    def test_default_page_size_is_fifty(self, client: Letta) -> None:
        label = unique("default-limit")
        for i in range(BLOCKS_LIMIT_DEFAULT + 1):
            client.blocks.create(label=label, value=f"v{i}")

        assert len(client.blocks.list(label=label).items) == BLOCKS_LIMIT_DEFAULT

    def test_order_asc_follows_creation(self, client: Letta) -> None:
        label = unique("order")
        created = [client.blocks.create(label=label, value=f"v{i}").id for i in range(3)]

        ascending = client.blocks.list(label=label, order="asc", limit=PAGE_ALL).items
        descending = client.blocks.list(label=label, order="desc", limit=PAGE_ALL).items

        assert [block.id for block in ascending] == created
        assert [block.id for block in descending] == created[::-1]

    def test_answers_both_slash_forms_without_redirect(self, http: httpx.Client) -> None:
        for path in ("/v1/blocks/", "/v1/blocks"):
            response = http.get(path, params={"limit": 1})
            assert response.status_code == 200, f"{path}: {response.text}"
            assert isinstance(response.json(), list)


class TestCoreMemory:
    def test_list_returns_the_agent_blocks(self, client: Letta) -> None:
        agent = new_agent(
            client,
            memory_blocks=[
                {"label": "human", "value": "Ada"},
                {"label": "persona", "value": "Helper"},
            ],
        )

        blocks = client.agents.blocks.list(agent.id).items

        assert {(b.label, b.value) for b in blocks} == {("human", "Ada"), ("persona", "Helper")}

    def test_retrieve_by_label(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}])

        block = client.agents.blocks.retrieve("human", agent_id=agent.id)

        assert block.label == "human"
        assert block.value == "Ada"
        assert is_id("block", block.id), block.id

    def test_retrieve_missing_label_is_not_found(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}])

        with pytest.raises(NotFoundError) as caught:
            client.agents.blocks.retrieve("no_such_label", agent_id=agent.id)

        assert error_detail(caught.value)

    def test_update_by_label_persists(self, client: Letta) -> None:
        agent = new_agent(
            client,
            memory_blocks=[
                {"label": "human", "value": "Ada"},
                {"label": "persona", "value": "Helper"},
            ],
        )

        updated = client.agents.blocks.update("human", agent_id=agent.id, value="Ada Lovelace")

        assert updated.label == "human"
        assert updated.value == "Ada Lovelace"
        assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "Ada Lovelace"
        assert client.agents.blocks.retrieve("persona", agent_id=agent.id).value == "Helper"
        full = client.agents.retrieve(agent.id, include=["agent.blocks"])
        assert {(b.label, b.value) for b in full.blocks} == {
            ("human", "Ada Lovelace"),
            ("persona", "Helper"),
        }

    def test_update_over_limit_is_rejected_and_nothing_changes(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada", "limit": 10}])

        with pytest.raises(UnprocessableEntityError) as caught:
            client.agents.blocks.update("human", agent_id=agent.id, value="testing testing testing")

        assert "Exceeds 10 character limit" in str(error_detail(caught.value))
        assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "Ada"

    def test_attach_and_detach(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}])
        block = client.blocks.create(label=unique("extra"), value="attached value")

        attached = client.agents.blocks.attach(block.id, agent_id=agent.id)

        assert attached.id == agent.id
        labels = {b.label for b in client.agents.blocks.list(agent.id).items}
        assert labels == {"human", block.label}
        assert client.agents.blocks.retrieve(str(block.label), agent_id=agent.id).value == (
            "attached value"
        )

        detached = client.agents.blocks.detach(block.id, agent_id=agent.id)

        assert detached.id == agent.id
        assert {b.label for b in client.agents.blocks.list(agent.id).items} == {"human"}
        with pytest.raises(NotFoundError):
            client.agents.blocks.retrieve(str(block.label), agent_id=agent.id)
        assert client.blocks.retrieve(block.id).value == "attached value"

    def test_attach_unknown_block_is_not_found(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}])

        with pytest.raises(NotFoundError):
            client.agents.blocks.attach(
                "block-00000000-0000-4000-8000-000000000000", agent_id=agent.id
            )

        assert {b.label for b in client.agents.blocks.list(agent.id).items} == {"human"}

    def test_blocks_of_unknown_agent_is_not_found(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.agents.blocks.list("agent-00000000-0000-4000-8000-000000000000")


class TestSharedBlocks:
    def test_standalone_update_is_seen_by_every_agent(self, client: Letta) -> None:
        label = unique("shared")
        block = client.blocks.create(label=label, value="v1")
        first = new_agent(client, block_ids=[block.id])
        second = new_agent(client)
        client.agents.blocks.attach(block.id, agent_id=second.id)

        client.blocks.update(block.id, value="v2")

        assert client.agents.blocks.retrieve(label, agent_id=first.id).value == "v2"
        assert client.agents.blocks.retrieve(label, agent_id=second.id).value == "v2"

    def test_core_memory_update_through_one_agent_is_seen_by_the_other(self, client: Letta) -> None:
        label = unique("shared")
        block = client.blocks.create(label=label, value="v1")
        first = new_agent(client, block_ids=[block.id])
        second = new_agent(client, block_ids=[block.id])

        client.agents.blocks.update(label, agent_id=first.id, value="written by first")

        assert client.agents.blocks.retrieve(label, agent_id=second.id).value == (
            "written by first"
        )
        assert client.blocks.retrieve(block.id).value == "written by first"

    def test_block_agents_lists_every_attached_agent(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("shared"), value="v")
        first = new_agent(client, block_ids=[block.id])
        second = new_agent(client, block_ids=[block.id])
        new_agent(client)

        agents = client.blocks.agents.list(block.id).items

        assert sorted(agent.id for agent in agents) == sorted([first.id, second.id])

    def test_block_agents_drops_a_deleted_agent(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("shared"), value="v")
        keep = new_agent(client, block_ids=[block.id])
        drop = new_agent(client, block_ids=[block.id])

        client.agents.delete(drop.id)

        assert [agent.id for agent in client.blocks.agents.list(block.id).items] == [keep.id]
        assert client.agents.blocks.retrieve(str(block.label), agent_id=keep.id).value == "v"

    def test_block_agents_of_a_detached_block_is_empty(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("lonely"), value="v")
        agent = new_agent(client, block_ids=[block.id])

        client.agents.blocks.detach(block.id, agent_id=agent.id)

        assert client.blocks.agents.list(block.id).items == []


class TestSystemPromptRebuild:
    def test_core_memory_patch_rebuilds_the_stored_system_message(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
        assert "Name: Ada" in stored_system_text(client, agent.id)
        client.agents.blocks.update("human", agent_id=agent.id, value="Name: Grace")
        text = stored_system_text(client, agent.id)
        assert "Name: Grace" in text
        assert "Name: Ada" not in text

    def test_shared_block_edit_rebuilds_every_attached_agent(self, client: Letta) -> None:
        block = client.blocks.create(label="team", value="colour: red")
        first = new_agent(client)
        second = new_agent(client)
        for agent in (first, second):
            client.agents.blocks.attach(block.id, agent_id=agent.id)
        client.blocks.update(block.id, value="colour: blue")
        for agent in (first, second):
            assert "colour: blue" in stored_system_text(client, agent.id)

    def test_recompile_returns_the_prompt_and_dry_run_changes_nothing(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "likes: tea"}])
        response = http.post(f"/v1/agents/{agent.id}/recompile", params={"dry_run": "true"})
        assert response.status_code == 200
        assert "likes: tea" in response.json()
        assert "<memory_blocks>" in response.json()

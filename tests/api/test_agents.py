"""Agents: create, retrieve with `include`, update, delete, list filters and pagination, tags
(letta-api.md §0 pagination, §1.2, §2.1, §3.2)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import httpx
import pytest
from letta_client import Letta, NotFoundError, Omit, omit
from letta_client.types import AgentState, AgentType

from ._support import (
    LETTA_V1_BASE_TOOLS,
    MEMGPT_BASE_TOOLS,
    MODEL,
    is_id,
    new_agent,
    unique,
)

# Far more items than any test here creates, so a page of this size holds all of them.
PAGE_ALL = 1_000
AGENTS_LIMIT_DEFAULT = 50
PAGINATED_AGENTS = 120
PAGINATED_PAGE_SIZE = 50
PARALLEL_CREATES = 16
PARALLEL_WORKERS = 8


def retrieve_full(client: Letta, agent_id: str) -> AgentState:
    return client.agents.retrieve(agent_id, include=["agent.blocks", "agent.tools", "agent.tags"])


def tool_names(agent: AgentState) -> set[str]:
    names = {tool.name for tool in agent.tools}
    assert None not in names, "a tool without a name"
    return {name for name in names if name is not None}


def ids_tagged(
    client: Letta, tag: str, *, order: Literal["asc", "desc"] | Omit = omit
) -> list[str]:
    """Ids of the agents carrying `tag`, as one page (no auto-paging)."""
    page = client.agents.list(tags=[tag], limit=PAGE_ALL, order=order)
    return [agent.id for agent in page.items]


class TestCreateAgent:
    def test_fields_round_trip(self, client: Letta) -> None:
        name = unique("round-trip")
        tags = [unique("tag-a"), unique("tag-b")]
        metadata: dict[str, object] = {"team": "kelpie", "rank": 3, "nested": {"ok": True}}

        created = client.agents.create(
            name=name,
            model=MODEL,
            memory_blocks=[
                {"label": "human", "value": "The user is called Ada."},
                {"label": "persona", "value": "I am a careful assistant."},
            ],
            tags=tags,
            metadata=metadata,
            description="An agent for the round-trip test",
            system="You are a test agent.",
        )

        assert is_id("agent", created.id), created.id
        assert created.name == name
        assert created.system == "You are a test agent."
        assert created.description == "An agent for the round-trip test"
        assert created.metadata == metadata
        assert created.llm_config.model == "gpt-4o-mini"
        assert created.llm_config.api_model_endpoint_type == "openai"
        assert isinstance(created.llm_config.context_window, int)
        assert created.llm_config.context_window > 0

        fetched = retrieve_full(client, created.id)
        assert fetched.id == created.id
        assert fetched.name == name
        assert fetched.system == "You are a test agent."
        assert fetched.description == "An agent for the round-trip test"
        assert fetched.metadata == metadata
        assert sorted(fetched.tags) == sorted(tags)
        assert {(b.label, b.value) for b in fetched.blocks} == {
            ("human", "The user is called Ada."),
            ("persona", "I am a careful assistant."),
        }

    def test_agent_type_defaults_to_letta_v1_agent(self, client: Letta) -> None:
        agent = new_agent(client)

        assert agent.agent_type == "letta_v1_agent"
        assert client.agents.retrieve(agent.id).agent_type == "letta_v1_agent"

    def test_model_handle_is_reported(self, client: Letta) -> None:
        agent = new_agent(client)

        assert client.agents.retrieve(agent.id).model == MODEL

    def test_timestamps_are_timezone_aware(self, client: Letta) -> None:
        agent = new_agent(client)

        fetched = client.agents.retrieve(agent.id)
        assert isinstance(fetched.created_at, dt.datetime)
        assert fetched.created_at.tzinfo is not None
        assert fetched.created_at.utcoffset() is not None

    def test_default_blocks_get_a_stock_description(self, client: Letta) -> None:
        agent = new_agent(
            client,
            memory_blocks=[{"label": "human", "value": "h"}, {"label": "persona", "value": "p"}],
        )

        blocks = retrieve_full(client, agent.id).blocks
        assert len(blocks) == 2
        for block in blocks:
            assert block.description, f"block {block.label} has no description"

    def test_name_is_generated_when_absent(self, client: Letta) -> None:
        first = client.agents.create(model=MODEL)
        second = client.agents.create(model=MODEL)

        assert isinstance(first.name, str)
        assert first.name
        assert first.name != second.name
        assert client.agents.retrieve(first.id).name == first.name

    def test_embedding_handle_round_trips(self, client: Letta) -> None:
        agent = client.agents.create(
            name=unique("embed"), model=MODEL, embedding="kelpie/all-minilm-l6-v2"
        )

        fetched = client.agents.retrieve(agent.id)
        assert fetched.embedding == "kelpie/all-minilm-l6-v2"
        assert fetched.embedding_config is not None
        assert fetched.embedding_config.embedding_dim == 384

    def test_tool_rules_round_trip(self, client: Letta) -> None:
        agent = client.agents.create(
            name=unique("rules"),
            model=MODEL,
            tool_rules=[
                {"type": "exit_loop", "tool_name": "memory_insert"},
                {"type": "max_count_per_step", "tool_name": "memory_replace", "max_count_limit": 2},
            ],
        )

        rules = client.agents.retrieve(agent.id).tool_rules or []
        assert [(rule.type, rule.tool_name) for rule in rules] == [
            ("exit_loop", "memory_insert"),
            ("max_count_per_step", "memory_replace"),
        ]
        assert getattr(rules[1], "max_count_limit", None) == 2

    def test_hidden_agent_is_not_listed(self, client: Letta) -> None:
        tag = unique("hidden")
        shown = new_agent(client, tags=[tag])
        hidden = client.agents.create(name=unique("hidden"), model=MODEL, tags=[tag], hidden=True)

        assert ids_tagged(client, tag) == [shown.id]
        assert client.agents.retrieve(hidden.id).hidden is True

    def test_ids_are_distinct(self, client: Letta) -> None:
        first = new_agent(client)
        second = new_agent(client)

        assert first.id != second.id


class TestRetrieveInclude:
    def test_relationships_are_empty_without_include(self, client: Letta) -> None:
        agent = new_agent(
            client,
            memory_blocks=[{"label": "human", "value": "Ada"}],
            tags=[unique("tag")],
        )

        fetched = client.agents.retrieve(agent.id)

        assert fetched.id == agent.id
        assert fetched.blocks == []
        assert fetched.tools == []
        assert fetched.tags == []
        assert fetched.memory.blocks == []

    def test_include_fills_blocks_tools_and_tags(self, client: Letta) -> None:
        tag = unique("tag")
        agent = new_agent(
            client,
            memory_blocks=[
                {"label": "human", "value": "Ada"},
                {"label": "persona", "value": "Helper"},
            ],
            tags=[tag],
        )

        fetched = retrieve_full(client, agent.id)

        assert {(b.label, b.value) for b in fetched.blocks} == {
            ("human", "Ada"),
            ("persona", "Helper"),
        }
        for block in fetched.blocks:
            assert is_id("block", block.id), block.id
        assert tool_names(fetched) == LETTA_V1_BASE_TOOLS
        assert fetched.tags == [tag]
        assert [b.id for b in fetched.memory.blocks] == [b.id for b in fetched.blocks]

    def test_include_one_relationship_leaves_the_others_empty(self, client: Letta) -> None:
        agent = new_agent(
            client, memory_blocks=[{"label": "human", "value": "Ada"}], tags=[unique("tag")]
        )

        fetched = client.agents.retrieve(agent.id, include=["agent.tags"])

        assert len(fetched.tags) == 1
        assert fetched.blocks == []
        assert fetched.tools == []

    def test_list_honours_include(self, client: Letta) -> None:
        tag = unique("tag")
        new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}], tags=[tag])

        bare = client.agents.list(tags=[tag]).items
        full = client.agents.list(tags=[tag], include=["agent.blocks", "agent.tags"]).items

        assert len(bare) == 1
        assert bare[0].blocks == []
        assert bare[0].tags == []
        assert len(full) == 1
        assert [(b.label, b.value) for b in full[0].blocks] == [("human", "Ada")]
        assert full[0].tags == [tag]


class TestBaseTools:
    def test_letta_v1_agent_gets_the_v1_set(self, client: Letta) -> None:
        agent = new_agent(client)

        assert tool_names(retrieve_full(client, agent.id)) == LETTA_V1_BASE_TOOLS

    def test_memgpt_agent_gets_the_memgpt_set(self, client: Letta) -> None:
        agent = new_agent(client, agent_type="memgpt_agent")

        fetched = retrieve_full(client, agent.id)
        assert fetched.agent_type == "memgpt_agent"
        assert tool_names(fetched) == MEMGPT_BASE_TOOLS

    @pytest.mark.parametrize(
        ("agent_type", "expected"),
        [
            (
                "memgpt_v2_agent",
                {"send_message", "conversation_search", "memory_insert", "memory_replace"},
            ),
            (
                "sleeptime_agent",
                {"memory_replace", "memory_insert", "memory_rethink", "memory_finish_edits"},
            ),
            ("react_agent", set()),
            ("workflow_agent", set()),
        ],
    )
    def test_other_agent_types_get_their_set(
        self, client: Letta, agent_type: AgentType, expected: set[str]
    ) -> None:
        agent = new_agent(client, agent_type=agent_type)

        fetched = retrieve_full(client, agent.id)
        assert fetched.agent_type == agent_type
        assert tool_names(fetched) == expected

    def test_letta_v1_agent_has_no_base_tool_rules(self, client: Letta) -> None:
        agent = new_agent(client)

        assert not client.agents.retrieve(agent.id).tool_rules

    def test_memgpt_agent_gets_base_tool_rules(self, client: Letta) -> None:
        agent = new_agent(client, agent_type="memgpt_agent")

        rules = client.agents.retrieve(agent.id).tool_rules or []
        by_tool = {(rule.tool_name, rule.type) for rule in rules}
        assert ("send_message", "exit_loop") in by_tool
        assert ("conversation_search", "continue_loop") in by_tool

    def test_include_base_tools_false_attaches_none(self, client: Letta) -> None:
        agent = new_agent(client, include_base_tools=False)

        assert retrieve_full(client, agent.id).tools == []

    def test_tools_by_name_are_attached_next_to_the_base_set(self, client: Letta) -> None:
        agent = new_agent(client, tools=["web_search"])

        assert tool_names(retrieve_full(client, agent.id)) == LETTA_V1_BASE_TOOLS | {"web_search"}

    def test_tools_by_name_alone(self, client: Letta) -> None:
        agent = new_agent(client, tools=["web_search"], include_base_tools=False)

        tools = retrieve_full(client, agent.id).tools
        assert [tool.name for tool in tools] == ["web_search"]
        assert is_id("tool", tools[0].id), tools[0].id


class TestUpdateAgent:
    def test_scalar_fields_persist(self, client: Letta) -> None:
        agent = new_agent(client, tags=[unique("old")])
        new_name = unique("renamed")
        new_tags = [unique("new-a"), unique("new-b")]

        updated = client.agents.update(
            agent.id,
            name=new_name,
            tags=new_tags,
            description="updated description",
            system="You are the updated system prompt.",
            metadata={"version": 2},
        )

        assert updated.id == agent.id
        assert updated.name == new_name
        fetched = retrieve_full(client, agent.id)
        assert fetched.name == new_name
        assert sorted(fetched.tags) == sorted(new_tags)
        assert fetched.description == "updated description"
        assert fetched.system == "You are the updated system prompt."
        assert fetched.metadata == {"version": 2}

    def test_omitted_fields_are_left_alone(self, client: Letta) -> None:
        tag = unique("keep")
        agent = client.agents.create(
            name=unique("keep"), model=MODEL, tags=[tag], description="keep me", system="Keep."
        )

        client.agents.update(agent.id, name=unique("renamed"))

        fetched = retrieve_full(client, agent.id)
        assert fetched.tags == [tag]
        assert fetched.description == "keep me"
        assert fetched.system == "Keep."

    def test_tool_ids_replace_the_tool_set(self, client: Letta) -> None:
        donor = retrieve_full(client, new_agent(client).id)
        kept = next(tool for tool in donor.tools if tool.name == "memory_insert")
        agent = new_agent(client)

        client.agents.update(agent.id, tool_ids=[kept.id])

        assert [tool.id for tool in retrieve_full(client, agent.id).tools] == [kept.id]

    def test_block_ids_replace_the_block_set(self, client: Letta) -> None:
        block = client.blocks.create(label=unique("label"), value="shared value")
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}])

        client.agents.update(agent.id, block_ids=[block.id])

        blocks = retrieve_full(client, agent.id).blocks
        assert [(b.id, b.value) for b in blocks] == [(block.id, "shared value")]

    def test_unknown_agent_is_not_found(self, client: Letta) -> None:
        missing = "agent-00000000-0000-4000-8000-000000000000"

        with pytest.raises(NotFoundError):
            client.agents.update(missing, name="nobody")


class TestDeleteAgent:
    def test_deleted_agent_is_gone(self, client: Letta) -> None:
        tag = unique("doomed")
        agent = new_agent(client, tags=[tag])

        client.agents.delete(agent.id)

        with pytest.raises(NotFoundError):
            client.agents.retrieve(agent.id)
        assert ids_tagged(client, tag) == []

    def test_delete_answers_200_with_null(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)

        response = http.delete(f"/v1/agents/{agent.id}")

        assert response.status_code == 200, response.text
        assert response.json() is None

    def test_second_delete_is_not_found(self, client: Letta) -> None:
        agent = new_agent(client)
        client.agents.delete(agent.id)

        with pytest.raises(NotFoundError):
            client.agents.delete(agent.id)

    def test_delete_leaves_other_agents(self, client: Letta) -> None:
        tag = unique("pair")
        keep = new_agent(client, tags=[tag])
        drop = new_agent(client, tags=[tag])

        client.agents.delete(drop.id)

        assert ids_tagged(client, tag) == [keep.id]
        assert client.agents.retrieve(keep.id).id == keep.id


class TestListFilters:
    def test_name_is_an_exact_match(self, client: Letta) -> None:
        name = unique("exact")
        wanted = new_agent(client, name=name)
        new_agent(client, name=f"{name}-longer")
        new_agent(client, name=f"prefix-{name}")

        found = client.agents.list(name=name, limit=PAGE_ALL).items

        assert [agent.id for agent in found] == [wanted.id]

    def test_tags_match_any_by_default(self, client: Letta) -> None:
        tag_a, tag_b, tag_c = unique("any-a"), unique("any-b"), unique("any-c")
        only_a = new_agent(client, tags=[tag_a])
        only_b = new_agent(client, tags=[tag_b])
        both = new_agent(client, tags=[tag_a, tag_b])
        new_agent(client, tags=[tag_c])

        found = client.agents.list(tags=[tag_a, tag_b], limit=PAGE_ALL).items

        assert sorted(agent.id for agent in found) == sorted([only_a.id, only_b.id, both.id])

    def test_match_all_tags_needs_every_tag(self, client: Letta) -> None:
        tag_a, tag_b = unique("all-a"), unique("all-b")
        new_agent(client, tags=[tag_a])
        new_agent(client, tags=[tag_b])
        both = new_agent(client, tags=[tag_a, tag_b, unique("extra")])

        found = client.agents.list(tags=[tag_a, tag_b], match_all_tags=True, limit=PAGE_ALL)

        assert [agent.id for agent in found.items] == [both.id]

    def test_query_text_matches_a_substring_of_the_name(self, client: Letta) -> None:
        marker = unique("qt")
        alpha = new_agent(client, name=f"alpha-{marker}-one")
        beta = new_agent(client, name=f"beta-{marker}-two")

        everyone = client.agents.list(query_text=marker, limit=PAGE_ALL).items
        only_alpha = client.agents.list(query_text=f"alpha-{marker}", limit=PAGE_ALL).items
        middle = client.agents.list(query_text=f"{marker}-tw", limit=PAGE_ALL).items

        assert sorted(agent.id for agent in everyone) == sorted([alpha.id, beta.id])
        assert [agent.id for agent in only_alpha] == [alpha.id]
        assert [agent.id for agent in middle] == [beta.id]

    def test_order_asc_and_desc_follow_creation(self, client: Letta) -> None:
        tag = unique("order")
        created = [new_agent(client, tags=[tag]).id for _ in range(4)]

        ascending = ids_tagged(client, tag, order="asc")
        descending = ids_tagged(client, tag, order="desc")
        default = ids_tagged(client, tag)

        assert ascending == created
        assert descending == created[::-1]
        assert default == descending

    def test_legacy_ascending_flag_orders_oldest_first(self, client: Letta) -> None:
        tag = unique("ascending")
        created = [new_agent(client, tags=[tag]).id for _ in range(3)]

        oldest_first = client.agents.list(tags=[tag], ascending=True, limit=PAGE_ALL).items
        newest_first = client.agents.list(tags=[tag], ascending=False, limit=PAGE_ALL).items

        assert [agent.id for agent in oldest_first] == created
        assert [agent.id for agent in newest_first] == created[::-1]

    def test_default_page_size_is_fifty(self, client: Letta) -> None:
        tag = unique("default-limit")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda _: new_agent(client, tags=[tag]), range(AGENTS_LIMIT_DEFAULT + 1)))

        page = client.agents.list(tags=[tag])

        assert len(page.items) == AGENTS_LIMIT_DEFAULT

    def test_order_by_updated_at_puts_the_last_updated_first(self, client: Letta) -> None:
        tag = unique("updated")
        older, newer = new_agent(client, tags=[tag]), new_agent(client, tags=[tag])

        client.agents.update(older.id, description="touched")

        page = client.agents.list(tags=[tag], order_by="updated_at", order="desc")
        assert [agent.id for agent in page.items] == [older.id, newer.id]

    def test_limit_caps_the_page(self, client: Letta) -> None:
        tag = unique("limit")
        created = [new_agent(client, tags=[tag]).id for _ in range(3)]

        page = client.agents.list(tags=[tag], limit=2, order="asc")

        assert [agent.id for agent in page.items] == created[:2]

    def test_after_cursor_continues_the_listing(self, client: Letta) -> None:
        tag = unique("after")
        created = [new_agent(client, tags=[tag]).id for _ in range(4)]

        page = client.agents.list(tags=[tag], after=created[1], order="asc", limit=PAGE_ALL)

        assert [agent.id for agent in page.items] == created[2:]

    def test_limit_one_probe_answers(self, client: Letta) -> None:
        new_agent(client)

        page = client.agents.list(limit=1)

        assert len(page.items) == 1


class TestPagination:
    def test_auto_paging_visits_every_agent_once(self, client: Letta) -> None:
        tag = unique("paged")
        with ThreadPoolExecutor(max_workers=4) as pool:
            created = set(
                pool.map(lambda _: new_agent(client, tags=[tag]).id, range(PAGINATED_AGENTS))
            )
        assert len(created) == PAGINATED_AGENTS

        seen: list[str] = []
        for agent in client.agents.list(tags=[tag], limit=PAGINATED_PAGE_SIZE):
            seen.append(agent.id)
            assert len(seen) <= PAGINATED_AGENTS, "auto-paging did not stop: `after` ignored?"

        assert len(seen) == PAGINATED_AGENTS
        assert set(seen) == created

    def test_pages_have_the_requested_size(self, client: Letta) -> None:
        tag = unique("sizes")
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda _: new_agent(client, tags=[tag]), range(7)))

        sizes = []
        for page in client.agents.list(tags=[tag], limit=3).iter_pages():
            sizes.append(len(page.items))
            assert len(sizes) <= 4, f"auto-paging did not stop, page sizes so far {sizes}"

        # The SDK stops only on an empty page, so the last page fetched is empty.
        assert sizes == [3, 3, 1, 0]

    def test_before_cursor_returns_the_items_preceding_it(self, client: Letta) -> None:
        tag = unique("before")
        created = [new_agent(client, tags=[tag]).id for _ in range(5)]
        newest_first = created[::-1]

        page = client.agents.list(tags=[tag], before=created[0], limit=PAGE_ALL)

        assert [agent.id for agent in page.items] == newest_first[:-1]

    def test_auto_paging_backwards_with_before_visits_every_agent_once(self, client: Letta) -> None:
        tag = unique("backwards")
        created = [new_agent(client, tags=[tag]).id for _ in range(7)]
        oldest = created[0]

        # The SDK pages backwards with before=<first item of the previous page>, so each page
        # must be the `limit` items right before the cursor, and an empty page ends it.
        seen: list[str] = []
        for agent in client.agents.list(tags=[tag], before=oldest, limit=2):
            seen.append(agent.id)
            assert len(seen) <= len(created), f"backward paging did not stop: {seen}"

        assert sorted(seen) == sorted(created[1:])
        assert len(seen) == len(set(seen))


class TestParallelCreates:
    def test_parallel_creates_all_succeed_and_are_listed(self, client: Letta) -> None:
        tag = unique("parallel")

        with ThreadPoolExecutor(max_workers=PARALLEL_WORKERS) as pool:
            agents = list(
                pool.map(lambda i: new_agent(client, tags=[tag]), range(PARALLEL_CREATES))
            )

        ids = {agent.id for agent in agents}
        assert len(ids) == PARALLEL_CREATES
        assert set(ids_tagged(client, tag)) == ids


class TestTrailingSlash:
    def test_agents_collection_answers_both_forms_without_redirect(
        self, http: httpx.Client
    ) -> None:
        with_slash = http.get("/v1/agents/", params={"limit": 1})
        without_slash = http.get("/v1/agents", params={"limit": 1})

        for response in (with_slash, without_slash):
            assert response.status_code == 200, response.text
            assert not response.is_redirect
            assert isinstance(response.json(), list)

    def test_create_without_trailing_slash(self, http: httpx.Client) -> None:
        name = unique("no-slash")

        response = http.post("/v1/agents", json={"name": name, "model": MODEL})

        assert response.status_code == 200, response.text
        assert response.json()["name"] == name


class TestTags:
    def test_tags_list_returns_plain_strings_including_ours(self, client: Letta) -> None:
        tag_a, tag_b = unique("listed-a"), unique("listed-b")
        new_agent(client, tags=[tag_a, tag_b])

        tags = client.tags.list(limit=PAGE_ALL)

        assert isinstance(tags, list)
        assert all(isinstance(tag, str) for tag in tags)
        assert tag_a in tags
        assert tag_b in tags

    def test_replaced_tags_leave_the_list(self, client: Letta) -> None:
        old_tag, new_tag = unique("old-tag"), unique("new-tag")
        agent = new_agent(client, tags=[old_tag])

        client.agents.update(agent.id, tags=[new_tag])

        tags = client.tags.list(limit=PAGE_ALL)
        assert new_tag in tags
        assert old_tag not in tags

    def test_each_tag_is_listed_once(self, client: Letta) -> None:
        tag = unique("dup")
        new_agent(client, tags=[tag])
        new_agent(client, tags=[tag])

        tags = client.tags.list(limit=PAGE_ALL)

        assert tags.count(tag) == 1


def test_count_agents_counts_creates_and_deletes(client: Letta, http: httpx.Client) -> None:
    before = http.get("/v1/agents/count").json()
    created = new_agent(client)
    assert http.get("/v1/agents/count").json() == before + 1
    client.agents.delete(created.id)
    assert http.get("/v1/agents/count").json() == before


class TestSecretsAndMcpServers:
    """Raw routes letta-code calls on start-up (letta-api.md §4.6)."""

    def test_secrets_lists_keys_and_values(self, client: Letta, http: httpx.Client) -> None:
        agent = client.agents.create(model=MODEL, secrets={"B_KEY": "b", "A_KEY": "a"})

        response = http.get(f"/v1/agents/{agent.id}/secrets")

        assert response.status_code == 200
        assert sorted((s["key"], s["value"]) for s in response.json()) == [
            ("A_KEY", "a"),
            ("B_KEY", "b"),
        ]

    def test_secrets_set_through_update_are_listed(self, client: Letta, http: httpx.Client) -> None:
        # letta-code's `/secret set` writes every secret back with agents.update.
        agent = new_agent(client)
        client.agents.update(agent.id, secrets={"TOKEN": "t"})

        response = http.get(f"/v1/agents/{agent.id}/secrets")

        assert [(s["key"], s["value"]) for s in response.json()] == [("TOKEN", "t")]

    def test_secrets_of_unknown_agent_is_not_found(self, http: httpx.Client) -> None:
        response = http.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000/secrets")
        assert response.status_code == 404

    def test_mcp_servers_is_an_empty_list(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)
        response = http.get(f"/v1/agents/{agent.id}/mcp-servers")
        assert response.status_code == 200
        assert response.json() == []

    def test_mcp_servers_of_unknown_agent_is_not_found(self, http: httpx.Client) -> None:
        response = http.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000/mcp-servers")
        assert response.status_code == 404

"""The agents-and-blocks role of the Store, the same assertions on every backend (SQLite and
PostgreSQL): round trips, relationships, strict cursor paging both ways, list filters, the
per-agent label rule, shared blocks, tool upserts, cascades, block history, in-context ids,
all-or-nothing imports, and storage errors for a store that is closed."""

import datetime as dt
from collections.abc import Sequence
from typing import Final

import pytest

from kelpie.env import Entropy
from kelpie.errors import InvalidInput
from kelpie.schemas import (
    AGENT_PREFIX,
    BLOCK_HISTORY_ENTRIES_MAX,
    BLOCK_PREFIX,
    MESSAGE_PREFIX,
    TOOL_PREFIX,
    AgentConfig,
    AgentState,
    Block,
    Message,
    Tool,
    us_from_datetime,
)
from kelpie.storage import (
    AgentQuery,
    AgentsImport,
    BlockChange,
    BlockQuery,
    NewAgent,
    Page,
    StorageConflict,
    StorageUnavailable,
    ToolQuery,
)

from ._backends import Backend, Conformance
from ._support import T0, agent_config, at, new_block

PAGE_SIZE: Final = 4
SAME_TIME_AGENTS: Final = 13
API: Final = BlockChange(source="api")
ALL: Final = Page(limit=1000, ascending=True)
AGENT_CONFIG_FIELDS: Final = set(AgentConfig.model_fields)


def _tool(
    entropy: Entropy, name: str, *, created_at: dt.datetime = T0, description: str = ""
) -> Tool:
    return Tool(
        id=entropy.new_id(TOOL_PREFIX),
        name=name,
        description=description or None,
        source_code=f"def {name}() -> str:\n    return 'ok'\n",
        created_at=created_at,
        updated_at=created_at,
    )


def _ids(items: Sequence[AgentConfig | Block | Tool | Message]) -> list[str]:
    return [item.id for item in items]


def _config(agent: AgentState | None) -> AgentConfig | None:
    if agent is None:
        return None
    return AgentConfig.model_validate(agent.model_dump(include=AGENT_CONFIG_FIELDS))


async def _insert(
    store: Conformance,
    agent: AgentConfig,
    *,
    new_blocks: Sequence[Block] = (),
    block_ids: Sequence[str] = (),
    tool_ids: Sequence[str] = (),
    tags: Sequence[str] = (),
    messages: Sequence[Message] = (),
) -> None:
    await store.insert_agent(
        agent,
        new_blocks=new_blocks,
        block_ids=block_ids,
        tool_ids=tool_ids,
        tags=tags,
        messages=messages,
    )


async def _walk(
    store: Conformance, query: AgentQuery, *, ascending: bool, before: str | None = None
) -> list[list[str]]:
    """Every page of list_agents: following `after` cursors, or `before` ones from `before`."""
    pages: list[list[str]] = []
    cursor = before
    while True:
        page = (
            Page(limit=PAGE_SIZE, ascending=ascending, before=cursor)
            if before is not None
            else Page(limit=PAGE_SIZE, ascending=ascending, after=cursor)
        )
        found = await store.list_agents(query, page)
        if not found:
            return pages
        pages.append(_ids(found))
        cursor = found[0].id if before is not None else found[-1].id


async def _names(store: Conformance, query: AgentQuery) -> list[str]:
    return [agent.name for agent in await store.list_agents(query, Page(limit=100, ascending=True))]


# Round trips ----------------------------------------------------------------------------


def test_insert_agent_round_trips_equal(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada", created_at=at(5), updated_at=at(9)).model_copy(
        update={"description": "a test agent", "metadata": {"k": [1, "two", 2.5, None]}}
    )

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        stored = await store.get_agent(agent.id)
        assert isinstance(stored, AgentState)
        assert _config(stored) == agent
        assert (stored.created_at, stored.updated_at) == (at(5), at(9))
        assert await store.count_agents() == 1
        assert await store.get_agent(entropy.new_id(AGENT_PREFIX)) is None

    backend.run(scenario)


def test_round_trips_survive_a_reopen(backend: Backend, entropy: Entropy) -> None:
    block = new_block(entropy, "human", "Ada \u00e9\u4e2d \u0000-free")
    agent = agent_config(entropy, "ada")

    async def write(store: Conformance) -> None:
        await _insert(store, agent, new_blocks=[block], block_ids=[block.id], tags=["t"])

    async def read(store: Conformance) -> None:
        assert _config(await store.get_agent(agent.id)) == agent
        assert await store.blocks_of_agents([agent.id]) == {agent.id: [block]}
        assert await store.tags_of_agents([agent.id]) == {agent.id: ["t"]}

    backend.run(write)
    backend.run(read)


def test_agent_reads_carry_no_relationships_from_the_row(
    backend: Backend, entropy: Entropy
) -> None:
    block = new_block(entropy, "human", "Ada")
    state = AgentState.model_validate(
        {
            **agent_config(entropy, "ada").model_dump(),
            "blocks": [block.model_dump()],
            "tags": ["not-stored"],
        }
    )

    async def scenario(store: Conformance) -> None:
        await _insert(store, state, tags=["stored"])
        stored = await store.get_agent(state.id)
        assert stored is not None
        assert (stored.blocks, stored.tools, stored.tags) == ([], [], [])
        assert await store.tags_of_agents([state.id]) == {state.id: ["stored"]}
        listed = await store.list_agents(AgentQuery(), Page(limit=10))
        assert [(a.id, a.tags, a.blocks) for a in listed] == [(state.id, [], [])]

    backend.run(scenario)


def test_insert_agent_stores_relationships(backend: Backend, entropy: Entropy) -> None:
    human = new_block(entropy, "human", "Ada", created_at=at(1))
    persona = new_block(entropy, "persona", "helpful", created_at=at(2))
    tool = _tool(entropy, "lookup")
    agent = agent_config(entropy, "ada", created_at=at(3))

    async def scenario(store: Conformance) -> None:
        await store.insert_tool(tool)
        await _insert(
            store,
            agent,
            new_blocks=[human, persona],
            block_ids=[persona.id, human.id],
            tool_ids=[tool.id],
            tags=["zeta", "alpha"],
        )
        assert await store.blocks_of_agents([agent.id]) == {agent.id: [human, persona]}
        assert await store.tools_of_agents([agent.id]) == {agent.id: [tool]}
        assert await store.tags_of_agents([agent.id]) == {agent.id: ["alpha", "zeta"]}
        assert await store.get_agent_block(agent.id, "persona") == persona
        assert await store.get_agent_block(agent.id, "missing") is None
        assert await store.list_agent_blocks(agent.id, ALL) == [human, persona]
        assert await store.list_agent_tools(agent.id, ALL) == [tool]

    backend.run(scenario)


def test_update_agent_replaces_only_the_relationships_given(
    backend: Backend, entropy: Entropy
) -> None:
    first, second = new_block(entropy, "human", created_at=at(1)), new_block(entropy, "persona")
    tool = _tool(entropy, "lookup")
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        await store.insert_tool(tool)
        await _insert(
            store, agent, new_blocks=[first, second], block_ids=[first.id], tool_ids=[tool.id]
        )
        renamed = agent.model_copy(update={"name": "grace", "updated_at": at(7)})
        await store.update_agent(renamed, block_ids=[second.id], tags=["new"])
        assert _config(await store.get_agent(agent.id)) == renamed
        assert await store.blocks_of_agents([agent.id]) == {agent.id: [second]}
        assert await store.tools_of_agents([agent.id]) == {agent.id: [tool]}
        assert await store.tags_of_agents([agent.id]) == {agent.id: ["new"]}
        assert await _names(store, AgentQuery(name="grace")) == ["grace"]

    backend.run(scenario)


# Pagination -----------------------------------------------------------------------------


@pytest.mark.parametrize("ascending", [True, False])
def test_list_agents_walks_same_time_agents_once_both_ways(
    backend: Backend, entropy: Entropy, ascending: bool
) -> None:
    agents = [agent_config(entropy, f"same-{index}") for index in range(SAME_TIME_AGENTS)]
    expected = sorted(agent.id for agent in agents)
    if not ascending:
        expected.reverse()

    async def scenario(store: Conformance) -> None:
        for agent in agents:
            await _insert(store, agent)
        forward = await _walk(store, AgentQuery(), ascending=ascending)
        assert [len(page) for page in forward] == [4, 4, 4, 1]
        assert [agent_id for page in forward for agent_id in page] == expected
        back = await _walk(store, AgentQuery(), ascending=ascending, before=expected[-1])
        assert back[0] == expected[-1 - PAGE_SIZE : -1]
        assert [agent_id for page in reversed(back) for agent_id in page] == expected[:-1]
        between = await store.list_agents(
            AgentQuery(),
            Page(limit=100, ascending=ascending, after=expected[3], before=expected[10]),
        )
        assert _ids(between) == expected[4:10]

    backend.run(scenario)


def test_list_agents_orders_by_created_at_before_id(backend: Backend, entropy: Entropy) -> None:
    agents = [agent_config(entropy, f"t{second}", created_at=at(second)) for second in (3, 1, 2)]

    async def scenario(store: Conformance) -> None:
        for agent in agents:
            await _insert(store, agent)
        assert await _names(store, AgentQuery()) == ["t1", "t2", "t3"]
        newest = await store.list_agents(AgentQuery(), Page(limit=10))
        assert [agent.name for agent in newest] == ["t3", "t2", "t1"]

    backend.run(scenario)


def test_list_agents_order_by_updated_at_pages_and_sees_touches(
    backend: Backend, entropy: Entropy
) -> None:
    agents = [
        agent_config(entropy, f"a{index}", created_at=at(index), updated_at=at(100 - index))
        for index in range(6)
    ]
    tool = _tool(entropy, "lookup")
    by_updated = AgentQuery(order_by="updated_at")

    async def scenario(store: Conformance) -> None:
        await store.insert_tool(tool)
        for agent in agents:
            await _insert(store, agent)
        pages = await _walk(store, by_updated, ascending=True)
        assert pages == [[agents[i].id for i in (5, 4, 3, 2)], [agents[i].id for i in (1, 0)]]
        # A touch at an earlier time does not move updated_at back; a later one does.
        await store.attach_tool(agents[0].id, tool.id, us_from_datetime(at(50)))
        await store.attach_tool(agents[5].id, tool.id, us_from_datetime(at(500)))
        newest = await store.list_agents(by_updated, Page(limit=2))
        assert [agent.name for agent in newest] == ["a5", "a0"]
        touched = await store.get_agent(agents[5].id)
        assert touched is not None
        assert touched.updated_at == at(500)

    backend.run(scenario)


@pytest.mark.parametrize("cursor", ["after", "before"])
def test_unknown_cursor_is_invalid_input(backend: Backend, entropy: Entropy, cursor: str) -> None:
    unknown = entropy.new_id(AGENT_PREFIX)
    page = Page(limit=2, after=unknown) if cursor == "after" else Page(limit=2, before=unknown)

    async def scenario(store: Conformance) -> None:
        with pytest.raises(InvalidInput, match=unknown):
            await store.list_agents(AgentQuery(), page)
        with pytest.raises(InvalidInput):
            await store.list_blocks(BlockQuery(), Page(limit=1, after=entropy.new_id(BLOCK_PREFIX)))

    backend.run(scenario)


def test_list_tools_pages_same_time_tools(backend: Backend, entropy: Entropy) -> None:
    tools = [_tool(entropy, f"tool_{index}") for index in range(7)]

    async def scenario(store: Conformance) -> None:
        for tool in tools:
            await store.insert_tool(tool)
        walked: list[str] = []
        after: str | None = None
        while page := await store.list_tools(
            ToolQuery(), Page(limit=3, ascending=True, after=after)
        ):
            walked.extend(_ids(page))
            after = page[-1].id
        assert walked == sorted(tool.id for tool in tools)

    backend.run(scenario)


# Filters --------------------------------------------------------------------------------


def test_list_agents_filters(backend: Backend, entropy: Entropy) -> None:
    tags = {"both": ["red", "blue"], "red": ["red"], "blue-green": ["blue", "green"], "none": []}
    agents = {name: agent_config(entropy, name, created_at=at(i)) for i, name in enumerate(tags)}
    hidden = agent_config(entropy, "hidden red", created_at=at(9), hidden=True)

    async def scenario(store: Conformance) -> None:
        for name, agent in agents.items():
            await _insert(store, agent, tags=tags[name])
        await _insert(store, hidden, tags=["red"])
        assert await _names(store, AgentQuery(tags=("red", "blue"))) == [
            "both",
            "red",
            "blue-green",
        ]
        assert await _names(store, AgentQuery(tags=("purple",))) == []
        match_all = AgentQuery(tags=("red", "blue"), match_all_tags=True)
        assert await _names(store, match_all) == ["both"]
        repeated = AgentQuery(tags=("blue", "blue"), match_all_tags=True)
        assert await _names(store, repeated) == ["both", "blue-green"]
        assert await _names(store, AgentQuery(name="red")) == ["red"]
        assert await _names(store, AgentQuery(name="re")) == []
        assert await _names(store, AgentQuery(query_text="RE")) == ["red", "blue-green"]
        assert await _names(store, AgentQuery(tags=("red",), include_hidden=True)) == [
            "both",
            "red",
            "hidden red",
        ]
        assert await store.list_tags(after=None, limit=10, query_text=None) == [
            "blue",
            "green",
            "red",
        ]
        assert await store.list_tags(after="blue", limit=1, query_text=None) == ["green"]
        assert await store.list_tags(after=None, limit=10, query_text="E") == [
            "blue",
            "green",
            "red",
        ]

    backend.run(scenario)


def test_like_wildcards_are_taken_literally(backend: Backend, entropy: Entropy) -> None:
    names = ["50%_off", "50xxoff", "100% sure", "a_b", "axb", "back\\slash", "plain"]
    blocks = [
        new_block(entropy, "human", "100% sure", created_at=at(1)),
        new_block(entropy, "persona", "100 percent", created_at=at(2)),
    ]

    async def scenario(store: Conformance) -> None:
        for index, name in enumerate(names):
            await _insert(store, agent_config(entropy, name, created_at=at(index)))
        for block in blocks:
            await store.insert_block(block)
        assert await _names(store, AgentQuery(query_text="%")) == ["50%_off", "100% sure"]
        assert await _names(store, AgentQuery(query_text="_")) == ["50%_off", "a_b"]
        assert await _names(store, AgentQuery(query_text="\\")) == ["back\\slash"]
        found = await store.list_blocks(BlockQuery(value_search="0%"), ALL)
        assert _ids(found) == [blocks[0].id]

    backend.run(scenario)


def test_list_blocks_filters(backend: Backend, entropy: Entropy) -> None:
    blocks = [
        new_block(entropy, "a", "alpha", created_at=at(1), tags=["x", "y"]),
        new_block(entropy, "b", "beta", created_at=at(2), tags=["x"]),
        new_block(entropy, "c", created_at=at(3)).model_copy(
            update={"is_template": True, "description": "Which Template"}
        ),
    ]

    async def scenario(store: Conformance) -> None:
        for block in blocks:
            await store.insert_block(block)
        any_x_y = await store.list_blocks(BlockQuery(tags=("x", "y")), ALL)
        all_x_y = await store.list_blocks(BlockQuery(tags=("x", "y"), match_all_tags=True), ALL)
        assert _ids(any_x_y) == [blocks[0].id, blocks[1].id]
        assert _ids(all_x_y) == [blocks[0].id]
        assert _ids(await store.list_blocks(BlockQuery(label="b"), ALL)) == [blocks[1].id]
        assert _ids(await store.list_blocks(BlockQuery(value_search="ET"), ALL)) == [blocks[1].id]
        templates = await store.list_blocks(BlockQuery(templates_only=True), ALL)
        assert _ids(templates) == [blocks[2].id]
        described = await store.list_blocks(BlockQuery(description_search="template"), ALL)
        assert _ids(described) == [blocks[2].id]
        newest = await store.list_blocks(BlockQuery(), Page(limit=2))
        assert _ids(newest) == [blocks[2].id, blocks[1].id]
        assert sorted(_ids(await store.get_blocks([b.id for b in blocks]))) == sorted(_ids(blocks))

    backend.run(scenario)


# Shared blocks and the (agent, label) rule ------------------------------------------------


def test_shared_block_updates_and_relabels_reach_every_agent(
    backend: Backend, entropy: Entropy
) -> None:
    shared = new_block(entropy, "team", "v1", created_at=at(1))
    own = new_block(entropy, "human", "Ada", created_at=at(2))
    first = agent_config(entropy, "first", created_at=at(3))
    second = agent_config(entropy, "second", created_at=at(4))

    async def scenario(store: Conformance) -> None:
        await store.insert_block(shared)
        await _insert(store, first, new_blocks=[own], block_ids=[shared.id, own.id])
        await _insert(store, second, block_ids=[shared.id])
        updated = shared.model_copy(update={"value": "v2", "label": "crew", "updated_at": at(9)})
        await store.update_block(updated, change=API)
        blocks = await store.blocks_of_agents([first.id, second.id])
        assert [block.value for block in blocks[first.id]] == ["v2", "Ada"]
        assert blocks[second.id] == [updated]
        for agent in (first, second):
            assert await store.get_agent_block(agent.id, "team") is None
            assert await store.get_agent_block(agent.id, "crew") == updated
        holders = await store.list_block_agents(shared.id, ALL)
        assert _ids(holders) == [first.id, second.id]

    backend.run(scenario)


def test_two_blocks_of_one_label_are_a_conflict_that_changes_nothing(
    backend: Backend, entropy: Entropy
) -> None:
    first, second = new_block(entropy, "human", "one"), new_block(entropy, "human", "two")
    persona = new_block(entropy, "persona")
    agent = agent_config(entropy, "ada")
    other = agent_config(entropy, "grace")

    async def scenario(store: Conformance) -> None:
        with pytest.raises(StorageConflict):
            await _insert(store, agent, new_blocks=[first, second], block_ids=[first.id, second.id])
        assert await store.get_agent(agent.id) is None
        assert await store.get_blocks([first.id, second.id]) == []
        await store.insert_block(second)
        await _insert(store, other, new_blocks=[first, persona], block_ids=[first.id, persona.id])
        with pytest.raises(StorageConflict):
            await store.attach_block(other.id, second, us_from_datetime(at(5)))
        with pytest.raises(StorageConflict):
            await store.update_block(persona.model_copy(update={"label": "human"}), change=API)
        assert await store.get_block(persona.id) == persona
        assert await store.get_agent_block(other.id, "persona") == persona
        assert await store.list_block_history(persona.id, ALL) == []

    backend.run(scenario)


def test_attach_twice_is_idempotent_and_detach_frees_the_label(
    backend: Backend, entropy: Entropy
) -> None:
    first, second = new_block(entropy, "human", "one"), new_block(entropy, "human", "two")
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        await store.insert_block(second)
        await _insert(store, agent, new_blocks=[first], block_ids=[first.id])
        await store.attach_block(agent.id, first, us_from_datetime(at(5)))
        assert await store.blocks_of_agents([agent.id]) == {agent.id: [first]}
        stored = await store.get_agent(agent.id)
        assert stored is not None
        assert stored.updated_at == at(5)
        assert await store.detach_block(agent.id, first.id, us_from_datetime(at(6))) is True
        await store.attach_block(agent.id, second, us_from_datetime(at(7)))
        assert await store.get_agent_block(agent.id, "human") == second
        assert await store.detach_block(agent.id, first.id, us_from_datetime(at(8))) is False

    backend.run(scenario)


# Tools ----------------------------------------------------------------------------------


def test_tools_upsert_conflict_and_detach(backend: Backend, entropy: Entropy) -> None:
    original = _tool(entropy, "send_message", created_at=at(1), description="old")
    replacement = _tool(entropy, "send_message", created_at=at(7), description="new")
    fresh = _tool(entropy, "archival_search", created_at=at(7))
    clash = _tool(entropy, "archival_search")
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        await store.insert_tool(original)
        stored = await store.upsert_tools([replacement, fresh])
        assert [tool.name for tool in stored] == ["archival_search", "send_message"]
        merged = stored[1]
        assert (merged.id, merged.created_at, merged.updated_at) == (original.id, at(1), at(7))
        assert merged.description == "new"
        assert await store.get_tool(original.id) == merged
        assert await store.get_tool(replacement.id) is None
        by_name = await store.get_tools_by_name(["send_message", "archival_search"])
        assert sorted(_ids(by_name)) == sorted([original.id, fresh.id])
        with pytest.raises(StorageConflict):
            await store.insert_tool(clash)
        assert await store.get_tool(clash.id) is None
        await _insert(store, agent, tool_ids=[original.id, fresh.id])
        assert await store.detach_tool(agent.id, fresh.id, us_from_datetime(at(9))) is True
        assert await store.detach_tool(agent.id, fresh.id, us_from_datetime(at(9))) is False
        assert await store.list_agent_tools(agent.id, ALL) == [merged]
        renamed = merged.model_copy(update={"description": "newer", "updated_at": at(10)})
        await store.update_tool(renamed)
        assert await store.get_tools([original.id]) == [renamed]
        only = ToolQuery(tool_types=(fresh.tool_type,), search="ARCHIVAL")
        assert _ids(await store.list_tools(only, ALL)) == [fresh.id]
        assert await store.delete_tool(fresh.id) is True
        assert await store.get_tool(fresh.id) is None

    backend.run(scenario)


# Cascades -------------------------------------------------------------------------------


def test_delete_agent_cascades_but_keeps_blocks_and_tools(
    backend: Backend, entropy: Entropy
) -> None:
    block = new_block(entropy, "human")
    tool = _tool(entropy, "lookup")
    doomed = agent_config(entropy, "doomed", created_at=at(1))
    kept = agent_config(entropy, "kept", created_at=at(2))

    async def scenario(store: Conformance) -> None:
        await store.insert_tool(tool)
        await _insert(
            store, doomed, new_blocks=[block], block_ids=[block.id], tool_ids=[tool.id], tags=["t"]
        )
        await _insert(store, kept, block_ids=[block.id], tool_ids=[tool.id], tags=["t"])
        assert await store.delete_agent(doomed.id) is True
        assert await store.get_agent(doomed.id) is None
        assert await store.get_block(block.id) == block
        assert await store.get_tool(tool.id) == tool
        assert await store.tags_of_agents([doomed.id]) == {doomed.id: []}
        assert _ids(await store.list_block_agents(block.id, ALL)) == [kept.id]
        assert await store.delete_agent(doomed.id) is False
        assert await store.count_agents() == 1
        assert await store.delete_block(block.id) is True
        assert await store.blocks_of_agents([kept.id]) == {kept.id: []}

    backend.run(scenario)


# Block history --------------------------------------------------------------------------


def test_block_history_records_tracked_changes_and_pages_by_seq(
    backend: Backend, entropy: Entropy
) -> None:
    block = new_block(entropy, "human", "Ada")

    async def scenario(store: Conformance) -> None:
        await store.insert_block(block)
        changed = block.model_copy(update={"value": "Grace", "updated_at": at(5)})
        await store.update_block(changed, change=API)
        untracked = changed.model_copy(update={"tags": ["x"], "updated_at": at(6)})
        await store.update_block(untracked, change=API)
        [entry] = await store.list_block_history(block.id, ALL)
        assert (entry.seq, entry.source, entry.created_at) == (1, "api", at(5))
        assert (entry.old.value, entry.new.value, entry.old.limit) == ("Ada", "Grace", block.limit)
        assert await store.get_block_history_entry(block.id, 1) == entry
        for index in range(6):
            update = {"value": f"v{index}", "description": f"d{index}", "updated_at": at(index)}
            await store.update_block(block.model_copy(update=update), change=API)

        async def seqs(page: Page) -> list[int]:
            return [e.seq for e in await store.list_block_history(block.id, page)]

        assert await seqs(Page(limit=3)) == [7, 6, 5]
        assert await seqs(Page(limit=3, after="5")) == [4, 3, 2]
        assert await seqs(Page(limit=3, ascending=True, after="5")) == [6, 7]
        assert await seqs(Page(limit=2, ascending=True, before="5")) == [3, 4]
        with pytest.raises(InvalidInput, match="sequence number"):
            await seqs(Page(limit=3, after="block-1"))
        assert await store.delete_block(block.id) is True
        assert await store.list_block_history(block.id, ALL) == []

    backend.run(scenario)


def test_block_history_keeps_the_newest_entries(backend: Backend, entropy: Entropy) -> None:
    block = new_block(entropy, "human", "Ada")
    extra = 3

    async def scenario(store: Conformance) -> None:
        await store.insert_block(block)
        for index in range(BLOCK_HISTORY_ENTRIES_MAX + extra):
            update = {"value": f"v{index}", "updated_at": at(index)}
            await store.update_block(block.model_copy(update=update), change=API)
        entries = await store.list_block_history(block.id, ALL)
        expected = list(range(extra + 1, BLOCK_HISTORY_ENTRIES_MAX + extra + 1))
        assert [entry.seq for entry in entries] == expected
        assert await store.get_block_history_entry(block.id, 1) is None

    backend.run(scenario)


# In-context ids -------------------------------------------------------------------------


def test_in_context_ids_move_with_their_head(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    messages = [
        Message(
            id=entropy.new_id(MESSAGE_PREFIX),
            agent_id=agent.id,
            role="system" if index == 0 else "user",
            text=f"message {index}",
            created_at=at(index),
        )
        for index in range(3)
    ]
    ids = [message.id for message in messages]
    agent = agent.model_copy(update={"message_ids": ids[:2]})

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent, messages=messages)
        stored = await store.get_agent(agent.id)
        assert stored is not None
        assert stored.message_ids == ids[:2]
        bare = await store.get_agent(agent.id, message_ids=False)
        assert bare is not None
        assert not bare.message_ids
        first = await store.context_since(agent.id, None, None)
        assert first is not None
        assert first.ids == tuple(ids[:2])
        assert await store.context_since(agent.id, None, first.head) is None
        await store.update_agent(agent.model_copy(update={"message_ids": ids}))
        moved = await store.context_since(agent.id, None, first.head)
        assert moved is not None
        assert (moved.ids, moved.head > first.head) == (tuple(ids), True)
        # The same list written again does not move the head.
        await store.update_agent(agent.model_copy(update={"message_ids": ids}))
        assert await store.context_since(agent.id, None, moved.head) is None
        listed = await store.list_agents(AgentQuery(), ALL)
        assert [a.message_ids for a in listed] == [ids]
        missing = await store.context_since(entropy.new_id(AGENT_PREFIX), None, None)
        assert missing is not None
        assert (missing.head, missing.ids) == (-1, ())

    backend.run(scenario)


# Imports --------------------------------------------------------------------------------


def _import_batch(entropy: Entropy, stored_tool: Tool) -> AgentsImport:
    shared = new_block(entropy, "policies", "Returns within 30 days")
    tool = _tool(entropy, "lookup_order")
    first, second = agent_config(entropy, "harbor"), agent_config(entropy, "sleeptime")
    own = new_block(entropy, "human", "Name: Priya")
    message = Message(
        id=entropy.new_id(MESSAGE_PREFIX),
        agent_id=first.id,
        role="user",
        text="Where is my order?",
        created_at=at(1),
    )
    return AgentsImport(
        tools_created=(tool,),
        tools_replaced=(stored_tool.model_copy(update={"description": "redefined"}),),
        blocks_created=(shared,),
        agents=(
            NewAgent(
                agent=first,
                new_blocks=(own,),
                block_ids=(own.id, shared.id),
                tool_ids=(tool.id, stored_tool.id),
                tags=("support",),
                messages=(message,),
            ),
            NewAgent(agent=second, block_ids=(shared.id,), tool_ids=(tool.id,)),
        ),
    )


def test_import_agents_writes_every_part_or_nothing(backend: Backend, entropy: Entropy) -> None:
    stored_tool = _tool(entropy, "shout", description="original")
    batch = _import_batch(entropy, stored_tool)
    first, second = batch.agents
    clash = second.agent.model_copy(update={"id": first.agent.id})
    broken = AgentsImport(
        tools_created=batch.tools_created,
        tools_replaced=batch.tools_replaced,
        blocks_created=batch.blocks_created,
        agents=(first, NewAgent(agent=clash)),
    )

    async def scenario(store: Conformance) -> None:
        await store.insert_tool(stored_tool)
        with pytest.raises(StorageConflict):
            await store.import_agents(broken)
        assert await store.get_agent(first.agent.id) is None
        assert await store.get_tools([batch.tools_created[0].id]) == []
        assert await store.get_blocks([batch.blocks_created[0].id]) == []
        assert await store.get_tool(stored_tool.id) == stored_tool

        await store.import_agents(batch)
        ids = [first.agent.id, second.agent.id]
        stored = [_config(await store.get_agent(agent_id)) for agent_id in ids]
        assert stored == [first.agent, second.agent]
        blocks = await store.blocks_of_agents(ids)
        assert sorted(_ids(blocks[ids[0]])) == sorted(first.block_ids)
        assert _ids(blocks[ids[1]]) == list(second.block_ids)
        tools = await store.tools_of_agents(ids)
        assert sorted(_ids(tools[ids[0]])) == sorted(first.tool_ids)
        assert await store.tags_of_agents(ids) == {ids[0]: ["support"], ids[1]: []}
        replaced = await store.get_tool(stored_tool.id)
        assert replaced is not None
        assert replaced.description == "redefined"

    backend.run(scenario)


# Failures -------------------------------------------------------------------------------


def test_a_closed_store_is_storage_unavailable(backend: Backend, entropy: Entropy) -> None:
    async def scenario(store: Conformance) -> None:
        await store.close()
        with pytest.raises(StorageUnavailable):
            await store.get_agent(entropy.new_id(AGENT_PREFIX))
        with pytest.raises(StorageUnavailable):
            await store.insert_block(new_block(entropy, "human"))

    backend.run(scenario)

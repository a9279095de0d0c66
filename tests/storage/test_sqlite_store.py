"""SqliteStore: round trips, strict cursor pagination, list filters, shared blocks, the
per-agent label rule, tool upserts, cascades, error translation, order by updated_at,
durability across a reopen, and the background WAL checkpointer."""

import asyncio
import contextlib
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pytest

from kelpie.env import Entropy
from kelpie.errors import InvalidInput
from kelpie.schemas import (
    AGENT_PREFIX,
    BLOCK_PREFIX,
    MESSAGE_PREFIX,
    TOOL_PREFIX,
    AgentConfig,
    AgentState,
    Block,
    Message,
    Tool,
    is_valid_id,
    us_from_datetime,
)
from kelpie.storage import (
    AgentQuery,
    AgentsImport,
    BlockChange,
    BlockQuery,
    NewAgent,
    Page,
    SqliteStore,
    StorageConflict,
    StorageUnavailable,
    Store,
    ToolQuery,
)

from ._support import T0, agent_config, at, insert_agent, new_block

SAME_TIME_AGENTS: Final = 25
PAGE_SIZE: Final = 4
CHECKPOINTER_THREAD: Final = "kelpie-wal-checkpoint"
CHECKPOINT_WAIT_S: Final = 10.0
POLL_INTERVAL_S: Final = 0.05
AGENT_CONFIG_FIELDS: Final = set(AgentConfig.model_fields)
API_CHANGE: Final = BlockChange(source="api")


def _tool(
    entropy: Entropy,
    name: str,
    *,
    created_at: dt.datetime = T0,
    description: str | None = None,
) -> Tool:
    return Tool(
        id=entropy.new_id(TOOL_PREFIX),
        name=name,
        description=description,
        source_code=f"def {name}() -> str:\n    return 'ok'\n",
        created_at=created_at,
        updated_at=created_at,
    )


def _ids(items: Sequence[AgentConfig | Block | Tool | Message]) -> list[str]:
    return [item.id for item in items]


def _config(agent: AgentState | None) -> AgentConfig | None:
    """The stored configuration of an agent read back (reads return the response shape)."""
    if agent is None:
        return None
    return AgentConfig.model_validate(agent.model_dump(include=AGENT_CONFIG_FIELDS))


def _open(path: Path) -> SqliteStore:
    return SqliteStore.open(path)


def _rows(db_path: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    """Reads through a connection of its own: what another process would see committed."""
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return [tuple(row) for row in db.execute(sql, params).fetchall()]


def _walk_after(store: SqliteStore, query: AgentQuery, *, ascending: bool) -> list[list[str]]:
    """Every page of `list_agents`, following `after` cursors until an empty page."""

    async def walk() -> list[list[str]]:
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            page = await store.list_agents(
                query, Page(limit=PAGE_SIZE, ascending=ascending, after=after)
            )
            if not page:
                return pages
            pages.append(_ids(page))
            after = page[-1].id

    return asyncio.run(walk())


def _walk_before(
    store: SqliteStore, query: AgentQuery, *, ascending: bool, start: str
) -> list[list[str]]:
    """Every page of `list_agents` before `start`, following `before` cursors back."""

    async def walk() -> list[list[str]]:
        pages: list[list[str]] = []
        before = start
        while True:
            page = await store.list_agents(
                query, Page(limit=PAGE_SIZE, ascending=ascending, before=before)
            )
            if not page:
                return pages
            pages.append(_ids(page))
            before = page[0].id

    return asyncio.run(walk())


def _same_time_agents(store: SqliteStore, entropy: Entropy) -> list[str]:
    """Inserts agents that all share T0; returns their ids in (created_at, id) order."""
    agents = [agent_config(entropy, f"same-{index}") for index in range(SAME_TIME_AGENTS)]

    async def insert_all() -> None:
        for agent in agents:
            await insert_agent(store, agent)

    asyncio.run(insert_all())
    return sorted(agent.id for agent in agents)


# Round trips ----------------------------------------------------------------------------


def test_sqlite_store_satisfies_the_store_protocol(store: SqliteStore) -> None:
    typed: Store = store
    assert typed is store


def test_insert_agent_round_trips_equal(store: SqliteStore, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada", created_at=at(5), updated_at=at(9)).model_copy(
        update={"description": "a test agent", "metadata": {"k": [1, "two"]}}
    )
    asyncio.run(insert_agent(store, agent))
    stored = asyncio.run(store.get_agent(agent.id))
    assert isinstance(stored, AgentState)
    assert _config(stored) == agent
    assert stored.created_at == at(5)
    assert stored.updated_at == at(9)
    assert asyncio.run(store.count_agents()) == 1


def test_agent_reads_carry_no_relationships_from_the_row(
    store: SqliteStore, entropy: Entropy
) -> None:
    # A full AgentState written as config: its relationships live in their own tables only.
    block = new_block(entropy, "human", "Ada")
    state = AgentState.model_validate(
        {
            **agent_config(entropy, "ada").model_dump(),
            "blocks": [block.model_dump()],
            "tags": ["not-stored"],
        }
    )
    asyncio.run(insert_agent(store, state, tags=["stored"]))
    stored = asyncio.run(store.get_agent(state.id))
    assert stored is not None
    assert (stored.blocks, stored.tools, stored.tags) == ([], [], [])
    assert stored.memory.blocks == []
    assert asyncio.run(store.tags_of_agents([state.id])) == {state.id: ["stored"]}
    listed = asyncio.run(store.list_agents(AgentQuery(), Page(limit=10)))
    assert [(agent.id, agent.tags, agent.blocks) for agent in listed] == [(state.id, [], [])]


def test_get_agent_unknown_id_is_none(store: SqliteStore, entropy: Entropy) -> None:
    assert asyncio.run(store.get_agent(entropy.new_id(AGENT_PREFIX))) is None


def test_insert_agent_stores_relationships(store: SqliteStore, entropy: Entropy) -> None:
    human = new_block(entropy, "human", "Ada", created_at=at(1))
    persona = new_block(entropy, "persona", "helpful", created_at=at(2))
    tool = _tool(entropy, "lookup")
    agent = agent_config(entropy, "ada", created_at=at(3))

    async def scenario() -> None:
        await store.insert_tool(tool)
        await insert_agent(
            store,
            agent,
            new_blocks=[human, persona],
            block_ids=[persona.id, human.id],
            tool_ids=[tool.id],
            tags=["zeta", "alpha"],
        )

    asyncio.run(scenario())
    assert asyncio.run(store.blocks_of_agents([agent.id])) == {agent.id: [human, persona]}
    assert asyncio.run(store.tools_of_agents([agent.id])) == {agent.id: [tool]}
    assert asyncio.run(store.tags_of_agents([agent.id])) == {agent.id: ["alpha", "zeta"]}
    assert asyncio.run(store.get_agent_block(agent.id, "persona")) == persona
    assert asyncio.run(store.get_agent_block(agent.id, "missing")) is None


# Pagination -----------------------------------------------------------------------------


@pytest.mark.parametrize("ascending", [True, False])
def test_list_agents_after_walk_yields_each_same_time_agent_once(
    store: SqliteStore, entropy: Entropy, ascending: bool
) -> None:
    expected = _same_time_agents(store, entropy)
    if not ascending:
        expected.reverse()
    pages = _walk_after(store, AgentQuery(), ascending=ascending)
    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 4, 1]
    walked = [agent_id for page in pages for agent_id in page]
    assert walked == expected
    assert len(set(walked)) == SAME_TIME_AGENTS


@pytest.mark.parametrize("ascending", [True, False])
def test_list_agents_before_walk_goes_back_in_page_order(
    store: SqliteStore, entropy: Entropy, ascending: bool
) -> None:
    expected = _same_time_agents(store, entropy)
    if not ascending:
        expected.reverse()
    pages = _walk_before(store, AgentQuery(), ascending=ascending, start=expected[-1])
    # The first page holds the items just before the cursor, each page in page order.
    assert pages[0] == expected[-1 - PAGE_SIZE : -1]
    assert [len(page) for page in pages] == [4, 4, 4, 4, 4, 4]
    walked = [agent_id for page in reversed(pages) for agent_id in page]
    assert walked == expected[:-1]


def test_list_agents_between_after_and_before(store: SqliteStore, entropy: Entropy) -> None:
    expected = _same_time_agents(store, entropy)
    page = asyncio.run(
        store.list_agents(
            AgentQuery(),
            Page(limit=100, ascending=True, after=expected[3], before=expected[10]),
        )
    )
    assert _ids(page) == expected[4:10]


def test_list_agents_orders_by_created_at_before_id(store: SqliteStore, entropy: Entropy) -> None:
    # Ids are random, so creation time, not id, must decide the order across timestamps.
    agents = [agent_config(entropy, f"t{second}", created_at=at(second)) for second in (3, 1, 2)]

    async def scenario() -> list[AgentState]:
        for agent in agents:
            await insert_agent(store, agent)
        return await store.list_agents(AgentQuery(), Page(limit=10, ascending=True))

    assert [agent.name for agent in asyncio.run(scenario())] == ["t1", "t2", "t3"]
    newest_first = asyncio.run(store.list_agents(AgentQuery(), Page(limit=10)))
    assert [agent.name for agent in newest_first] == ["t3", "t2", "t1"]


@pytest.mark.parametrize("cursor", ["after", "before"])
def test_list_agents_unknown_cursor_is_invalid_input(
    store: SqliteStore, entropy: Entropy, cursor: str
) -> None:
    _same_time_agents(store, entropy)
    unknown = entropy.new_id(AGENT_PREFIX)
    page = (
        Page(limit=PAGE_SIZE, after=unknown)
        if cursor == "after"
        else Page(limit=PAGE_SIZE, before=unknown)
    )
    with pytest.raises(InvalidInput, match=unknown):
        asyncio.run(store.list_agents(AgentQuery(), page))


def test_list_blocks_unknown_cursor_is_invalid_input(store: SqliteStore, entropy: Entropy) -> None:
    with pytest.raises(InvalidInput):
        asyncio.run(
            store.list_blocks(BlockQuery(), Page(limit=1, after=entropy.new_id(BLOCK_PREFIX)))
        )


def test_list_tools_after_walk_pages_same_time_tools(store: SqliteStore, entropy: Entropy) -> None:
    tools = [_tool(entropy, f"tool_{index}") for index in range(10)]

    async def scenario() -> list[str]:
        for tool in tools:
            await store.insert_tool(tool)
        walked: list[str] = []
        after: str | None = None
        while page := await store.list_tools(
            ToolQuery(), Page(limit=3, ascending=True, after=after)
        ):
            walked.extend(_ids(page))
            after = page[-1].id
        return walked

    assert asyncio.run(scenario()) == sorted(tool.id for tool in tools)


# Filters --------------------------------------------------------------------------------


def _tagged_agents(store: SqliteStore, entropy: Entropy) -> dict[str, AgentConfig]:
    tags = {
        "both": ["red", "blue"],
        "red": ["red"],
        "blue-green": ["blue", "green"],
        "untagged": [],
    }
    agents = {name: agent_config(entropy, name, created_at=at(i)) for i, name in enumerate(tags)}

    async def insert_all() -> None:
        for name, agent in agents.items():
            await insert_agent(store, agent, tags=tags[name])

    asyncio.run(insert_all())
    return agents


def _names(store: SqliteStore, query: AgentQuery) -> list[str]:
    agents = asyncio.run(store.list_agents(query, Page(limit=100, ascending=True)))
    return [agent.name for agent in agents]


def test_list_agents_tags_match_any(store: SqliteStore, entropy: Entropy) -> None:
    _tagged_agents(store, entropy)
    assert _names(store, AgentQuery(tags=("red", "blue"))) == ["both", "red", "blue-green"]
    assert _names(store, AgentQuery(tags=("green",))) == ["blue-green"]
    assert _names(store, AgentQuery(tags=("purple",))) == []


def test_list_agents_tags_match_all(store: SqliteStore, entropy: Entropy) -> None:
    _tagged_agents(store, entropy)
    assert _names(store, AgentQuery(tags=("red", "blue"), match_all_tags=True)) == ["both"]
    assert _names(store, AgentQuery(tags=("red",), match_all_tags=True)) == ["both", "red"]
    # A repeated tag is one requirement, not two.
    assert _names(store, AgentQuery(tags=("blue", "blue"), match_all_tags=True)) == [
        "both",
        "blue-green",
    ]
    assert _names(store, AgentQuery(tags=("red", "green"), match_all_tags=True)) == []


def test_list_agents_filters_by_exact_name(store: SqliteStore, entropy: Entropy) -> None:
    for index, name in enumerate(["ada", "ada", "adam", "bob"]):
        asyncio.run(insert_agent(store, agent_config(entropy, name, created_at=at(index))))
    assert _names(store, AgentQuery(name="ada")) == ["ada", "ada"]
    assert _names(store, AgentQuery(name="ad")) == []


def test_list_agents_query_text_is_a_substring_match(store: SqliteStore, entropy: Entropy) -> None:
    for index, name in enumerate(["Alpha Agent", "beta", "alphabet"]):
        asyncio.run(insert_agent(store, agent_config(entropy, name, created_at=at(index))))
    # SQLite LIKE folds ASCII case.
    assert _names(store, AgentQuery(query_text="alpha")) == ["Alpha Agent", "alphabet"]
    assert _names(store, AgentQuery(query_text="bet")) == ["beta", "alphabet"]


def test_list_agents_query_text_treats_like_wildcards_literally(
    store: SqliteStore, entropy: Entropy
) -> None:
    names = ["50%_off", "50xxoff", "100% sure", "a_b", "axb", "back\\slash", "plain"]
    for index, name in enumerate(names):
        asyncio.run(insert_agent(store, agent_config(entropy, name, created_at=at(index))))
    assert _names(store, AgentQuery(query_text="%")) == ["50%_off", "100% sure"]
    assert _names(store, AgentQuery(query_text="_")) == ["50%_off", "a_b"]
    assert _names(store, AgentQuery(query_text="50%_")) == ["50%_off"]
    assert _names(store, AgentQuery(query_text="a_b")) == ["a_b"]
    assert _names(store, AgentQuery(query_text="\\")) == ["back\\slash"]


def test_list_agents_hides_hidden_unless_asked(store: SqliteStore, entropy: Entropy) -> None:
    asyncio.run(insert_agent(store, agent_config(entropy, "shown", created_at=at(1))))
    asyncio.run(insert_agent(store, agent_config(entropy, "secret", created_at=at(2), hidden=True)))
    assert _names(store, AgentQuery()) == ["shown"]
    assert _names(store, AgentQuery(include_hidden=True)) == ["shown", "secret"]


def test_list_blocks_search_treats_like_wildcards_literally(
    store: SqliteStore, entropy: Entropy
) -> None:
    blocks = [
        new_block(entropy, "human", "100% sure", created_at=at(1)),
        new_block(entropy, "persona", "100 percent", created_at=at(2)),
    ]
    for block in blocks:
        asyncio.run(store.insert_block(block))
    found = asyncio.run(
        store.list_blocks(BlockQuery(value_search="0%"), Page(limit=10, ascending=True))
    )
    assert _ids(found) == [blocks[0].id]


def test_list_blocks_filters_by_tags(store: SqliteStore, entropy: Entropy) -> None:
    blocks = [
        new_block(entropy, "a", created_at=at(1), tags=["x", "y"]),
        new_block(entropy, "b", created_at=at(2), tags=["x"]),
        new_block(entropy, "c", created_at=at(3)),
    ]
    for block in blocks:
        asyncio.run(store.insert_block(block))
    page = Page(limit=10, ascending=True)
    any_x_y = asyncio.run(store.list_blocks(BlockQuery(tags=("x", "y")), page))
    all_x_y = asyncio.run(store.list_blocks(BlockQuery(tags=("x", "y"), match_all_tags=True), page))
    assert _ids(any_x_y) == [blocks[0].id, blocks[1].id]
    assert _ids(all_x_y) == [blocks[0].id]


# Blocks shared between agents -----------------------------------------------------------


def test_update_of_a_shared_block_is_seen_by_every_agent(
    store: SqliteStore, entropy: Entropy
) -> None:
    shared = new_block(entropy, "team", "v1", created_at=at(1))
    own = new_block(entropy, "human", "Ada", created_at=at(2))
    first = agent_config(entropy, "first", created_at=at(3))
    second = agent_config(entropy, "second", created_at=at(4))

    async def scenario() -> None:
        await store.insert_block(shared)
        await insert_agent(store, first, new_blocks=[own], block_ids=[shared.id, own.id])
        await insert_agent(store, second, block_ids=[shared.id])
        await store.update_block(
            shared.model_copy(update={"value": "v2", "updated_at": at(9)}), change=API_CHANGE
        )

    asyncio.run(scenario())
    blocks = asyncio.run(store.blocks_of_agents([first.id, second.id]))
    assert [block.value for block in blocks[first.id]] == ["v2", "Ada"]
    assert [block.value for block in blocks[second.id]] == ["v2"]
    assert blocks[first.id][0] == blocks[second.id][0]
    assert blocks[second.id][0].updated_at == at(9)
    holders = asyncio.run(store.list_block_agents(shared.id, Page(limit=10, ascending=True)))
    assert _ids(holders) == [first.id, second.id]


def test_relabelling_a_shared_block_moves_its_label_for_every_agent(
    store: SqliteStore, entropy: Entropy
) -> None:
    shared = new_block(entropy, "team")
    first = agent_config(entropy, "first", created_at=at(1))
    second = agent_config(entropy, "second", created_at=at(2))

    async def scenario() -> None:
        await store.insert_block(shared)
        await insert_agent(store, first, block_ids=[shared.id])
        await insert_agent(store, second, block_ids=[shared.id])
        await store.update_block(shared.model_copy(update={"label": "crew"}), change=API_CHANGE)

    asyncio.run(scenario())
    for agent in (first, second):
        assert asyncio.run(store.get_agent_block(agent.id, "team")) is None
        block = asyncio.run(store.get_agent_block(agent.id, "crew"))
        assert block is not None
        assert block.id == shared.id


# The (agent, label) rule ------------------------------------------------------------------


def test_insert_agent_with_two_blocks_of_one_label_is_a_conflict(
    store: SqliteStore, entropy: Entropy
) -> None:
    first = new_block(entropy, "human", "one")
    second = new_block(entropy, "human", "two")
    agent = agent_config(entropy, "ada")
    with pytest.raises(StorageConflict):
        asyncio.run(
            insert_agent(store, agent, new_blocks=[first, second], block_ids=[first.id, second.id])
        )
    # The transaction rolled back: neither the agent nor its new blocks were stored.
    assert asyncio.run(store.get_agent(agent.id)) is None
    assert asyncio.run(store.get_blocks([first.id, second.id])) == []


def test_relabelling_onto_a_label_the_agent_has_is_a_conflict(
    store: SqliteStore, entropy: Entropy
) -> None:
    human = new_block(entropy, "human")
    persona = new_block(entropy, "persona")
    agent = agent_config(entropy, "ada")
    asyncio.run(
        insert_agent(store, agent, new_blocks=[human, persona], block_ids=[human.id, persona.id])
    )
    with pytest.raises(StorageConflict):
        asyncio.run(
            store.update_block(persona.model_copy(update={"label": "human"}), change=API_CHANGE)
        )
    assert asyncio.run(store.get_block(persona.id)) == persona
    assert asyncio.run(store.get_agent_block(agent.id, "persona")) == persona


def test_attach_block_with_a_label_the_agent_has_is_a_conflict(
    store: SqliteStore, entropy: Entropy
) -> None:
    first = new_block(entropy, "human", "one")
    second = new_block(entropy, "human", "two")
    agent = agent_config(entropy, "ada")

    async def scenario() -> None:
        await store.insert_block(second)
        await insert_agent(store, agent, new_blocks=[first], block_ids=[first.id])
        await store.attach_block(agent.id, second, us_from_datetime(at(5)))

    with pytest.raises(StorageConflict):
        asyncio.run(scenario())


def test_attach_block_twice_is_idempotent(store: SqliteStore, entropy: Entropy) -> None:
    block = new_block(entropy, "human")
    agent = agent_config(entropy, "ada")

    async def scenario() -> None:
        await insert_agent(store, agent, new_blocks=[block], block_ids=[block.id])
        await store.attach_block(agent.id, block, us_from_datetime(at(5)))

    asyncio.run(scenario())
    assert asyncio.run(store.blocks_of_agents([agent.id])) == {agent.id: [block]}
    stored = asyncio.run(store.get_agent(agent.id))
    assert stored is not None
    assert stored.updated_at == at(5)


def test_detach_then_attach_block_with_the_freed_label(
    store: SqliteStore, entropy: Entropy
) -> None:
    first = new_block(entropy, "human", "one")
    second = new_block(entropy, "human", "two")
    agent = agent_config(entropy, "ada")

    async def scenario() -> bool:
        await store.insert_block(second)
        await insert_agent(store, agent, new_blocks=[first], block_ids=[first.id])
        detached = await store.detach_block(agent.id, first.id, us_from_datetime(at(1)))
        await store.attach_block(agent.id, second, us_from_datetime(at(2)))
        return detached

    assert asyncio.run(scenario()) is True
    assert asyncio.run(store.get_agent_block(agent.id, "human")) == second
    assert asyncio.run(store.detach_block(agent.id, first.id, us_from_datetime(at(3)))) is False


# Tools ----------------------------------------------------------------------------------


def test_upsert_tools_keeps_id_and_created_at_of_a_stored_name(
    store: SqliteStore, entropy: Entropy
) -> None:
    original = _tool(entropy, "send_message", created_at=at(1), description="old")
    replacement = _tool(entropy, "send_message", created_at=at(7), description="new")
    fresh = _tool(entropy, "archival_search", created_at=at(7))
    asyncio.run(store.insert_tool(original))
    stored = asyncio.run(store.upsert_tools([replacement, fresh]))
    # Returned in name order; the replacement took over the stored identity.
    assert [tool.name for tool in stored] == ["archival_search", "send_message"]
    merged = stored[1]
    assert merged.id == original.id
    assert merged.created_at == at(1)
    assert merged.updated_at == at(7)
    assert merged.description == "new"
    assert stored[0] == fresh
    assert asyncio.run(store.get_tool(original.id)) == merged
    assert asyncio.run(store.get_tool(replacement.id)) is None
    by_name = asyncio.run(store.get_tools_by_name(["send_message", "archival_search"]))
    assert sorted(_ids(by_name)) == sorted([original.id, fresh.id])


def test_insert_tool_with_a_taken_name_is_a_conflict(store: SqliteStore, entropy: Entropy) -> None:
    asyncio.run(store.insert_tool(_tool(entropy, "lookup")))
    clash = _tool(entropy, "lookup")
    with pytest.raises(StorageConflict):
        asyncio.run(store.insert_tool(clash))
    assert asyncio.run(store.get_tool(clash.id)) is None


def test_attach_tool_moves_updated_at_forward_only(store: SqliteStore, entropy: Entropy) -> None:
    tool = _tool(entropy, "lookup")
    agent = agent_config(entropy, "ada", updated_at=at(10))

    async def scenario() -> None:
        await store.insert_tool(tool)
        await insert_agent(store, agent)
        await store.attach_tool(agent.id, tool.id, us_from_datetime(at(5)))

    asyncio.run(scenario())
    stored = asyncio.run(store.get_agent(agent.id))
    assert stored is not None
    assert stored.updated_at == at(10)
    assert asyncio.run(store.tools_of_agents([agent.id])) == {agent.id: [tool]}
    asyncio.run(store.attach_tool(agent.id, tool.id, us_from_datetime(at(20))))
    stored = asyncio.run(store.get_agent(agent.id))
    assert stored is not None
    assert stored.updated_at == at(20)


# Deletes --------------------------------------------------------------------------------


def test_delete_agent_cascades_relationships_but_keeps_blocks_and_tools(
    store: SqliteStore, entropy: Entropy, db_path: Path
) -> None:
    block = new_block(entropy, "human")
    tool = _tool(entropy, "lookup")
    doomed = agent_config(entropy, "doomed", created_at=at(1))
    kept = agent_config(entropy, "kept", created_at=at(2))

    async def scenario() -> bool:
        await store.insert_tool(tool)
        await insert_agent(
            store, doomed, new_blocks=[block], block_ids=[block.id], tool_ids=[tool.id], tags=["t"]
        )
        await insert_agent(store, kept, block_ids=[block.id], tool_ids=[tool.id], tags=["t"])
        return await store.delete_agent(doomed.id)

    assert asyncio.run(scenario()) is True
    for table in ("agent_tags", "agent_blocks", "agent_tools"):
        sql = f"SELECT agent_id FROM {table}"
        assert _rows(db_path, sql) == [(kept.id,)], table
    assert asyncio.run(store.get_agent(doomed.id)) is None
    assert asyncio.run(store.get_block(block.id)) == block
    assert asyncio.run(store.get_tool(tool.id)) == tool
    assert asyncio.run(store.tags_of_agents([doomed.id])) == {doomed.id: []}
    assert asyncio.run(store.delete_agent(doomed.id)) is False
    assert asyncio.run(store.count_agents()) == 1


def test_delete_block_detaches_it_from_agents(store: SqliteStore, entropy: Entropy) -> None:
    block = new_block(entropy, "human")
    agent = agent_config(entropy, "ada")
    asyncio.run(insert_agent(store, agent, new_blocks=[block], block_ids=[block.id]))
    assert asyncio.run(store.delete_block(block.id)) is True
    assert asyncio.run(store.blocks_of_agents([agent.id])) == {agent.id: []}
    assert _config(asyncio.run(store.get_agent(agent.id))) == agent


# Driver failures ------------------------------------------------------------------------


def test_read_after_close_is_storage_unavailable(db_path: Path, entropy: Entropy) -> None:
    closed = _open(db_path)
    asyncio.run(closed.close())
    with pytest.raises(StorageUnavailable):
        asyncio.run(closed.get_agent(entropy.new_id(AGENT_PREFIX)))
    with pytest.raises(StorageUnavailable):
        asyncio.run(closed.list_agents(AgentQuery(), Page(limit=1)))


def test_write_after_close_is_storage_unavailable(db_path: Path, entropy: Entropy) -> None:
    closed = _open(db_path)
    asyncio.run(closed.close())
    with pytest.raises(StorageUnavailable):
        asyncio.run(insert_agent(closed, agent_config(entropy, "ada")))
    with pytest.raises(StorageUnavailable):
        asyncio.run(closed.insert_block(new_block(entropy, "human")))


def test_open_a_directory_is_storage_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with pytest.raises(StorageUnavailable):
        SqliteStore.open(directory)


# Order by updated_at --------------------------------------------------------------------


def test_list_agents_order_by_updated_at(store: SqliteStore, entropy: Entropy) -> None:
    # Created in one order, updated in the reverse order.
    agents = [
        agent_config(entropy, f"a{index}", created_at=at(index), updated_at=at(100 - index))
        for index in range(6)
    ]
    for agent in agents:
        asyncio.run(insert_agent(store, agent))
    by_updated = AgentQuery(order_by="updated_at")
    ascending = asyncio.run(store.list_agents(by_updated, Page(limit=10, ascending=True)))
    assert [agent.name for agent in ascending] == ["a5", "a4", "a3", "a2", "a1", "a0"]
    descending = asyncio.run(store.list_agents(by_updated, Page(limit=10)))
    assert [agent.name for agent in descending] == ["a0", "a1", "a2", "a3", "a4", "a5"]
    by_created = asyncio.run(store.list_agents(AgentQuery(), Page(limit=10, ascending=True)))
    assert [agent.name for agent in by_created] == ["a0", "a1", "a2", "a3", "a4", "a5"]


def test_list_agents_order_by_updated_at_pages_by_updated_cursor(
    store: SqliteStore, entropy: Entropy
) -> None:
    agents = [
        agent_config(entropy, f"a{index}", created_at=at(index), updated_at=at(100 - index))
        for index in range(6)
    ]
    for agent in agents:
        asyncio.run(insert_agent(store, agent))
    pages = _walk_after(store, AgentQuery(order_by="updated_at"), ascending=True)
    assert pages == [[agents[i].id for i in (5, 4, 3, 2)], [agents[i].id for i in (1, 0)]]
    back = _walk_before(
        store, AgentQuery(order_by="updated_at"), ascending=True, start=agents[0].id
    )
    assert back == [[agents[i].id for i in (4, 3, 2, 1)], [agents[5].id]]


def test_list_agents_order_by_updated_at_sees_touches(store: SqliteStore, entropy: Entropy) -> None:
    tool = _tool(entropy, "lookup")
    agents = [agent_config(entropy, f"a{index}", created_at=at(index)) for index in range(3)]

    async def scenario() -> list[AgentState]:
        await store.insert_tool(tool)
        for agent in agents:
            await insert_agent(store, agent)
        await store.attach_tool(agents[0].id, tool.id, us_from_datetime(at(50)))
        return await store.list_agents(AgentQuery(order_by="updated_at"), Page(limit=10))

    assert [agent.name for agent in asyncio.run(scenario())] == ["a0", "a2", "a1"]


# Durability -----------------------------------------------------------------------------


def test_committed_writes_survive_a_reopen(db_path: Path, entropy: Entropy) -> None:
    block = new_block(entropy, "human", "Ada")
    tool = _tool(entropy, "lookup")
    agent = agent_config(entropy, "ada")

    async def write() -> None:
        first = _open(db_path)
        await first.insert_tool(tool)
        await insert_agent(
            first, agent, new_blocks=[block], block_ids=[block.id], tool_ids=[tool.id], tags=["x"]
        )
        await first.close()

    async def read() -> tuple[AgentConfig | None, list[Block], list[Tool], list[str]]:
        second = _open(db_path)
        try:
            return (
                _config(await second.get_agent(agent.id)),
                (await second.blocks_of_agents([agent.id]))[agent.id],
                (await second.tools_of_agents([agent.id]))[agent.id],
                (await second.tags_of_agents([agent.id]))[agent.id],
            )
        finally:
            await second.close()

    asyncio.run(write())
    assert asyncio.run(read()) == (agent, [block], [tool], ["x"])


def test_committed_writes_are_visible_to_a_second_store_without_close(
    db_path: Path, entropy: Entropy
) -> None:
    # A process killed without closing: its committed transactions are in the WAL.
    agent = agent_config(entropy, "ada")
    first = _open(db_path)
    second: SqliteStore | None = None
    try:
        asyncio.run(insert_agent(first, agent))
        second = _open(db_path)
        assert _config(asyncio.run(second.get_agent(agent.id))) == agent
        assert asyncio.run(second.count_agents()) == 1
    finally:
        if second is not None:
            asyncio.run(second.close())
        asyncio.run(first.close())


def _checkpointer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == CHECKPOINTER_THREAD]


def test_background_checkpointer_copies_the_wal_and_stops_on_close(
    db_path: Path, entropy: Entropy
) -> None:
    assert _checkpointer_threads() == []
    agents = [agent_config(entropy, f"a{index}", created_at=at(index)) for index in range(200)]
    store = SqliteStore.open(db_path, background_checkpoints=True)
    try:
        assert [thread.is_alive() for thread in _checkpointer_threads()] == [True]
        size_before = db_path.stat().st_size
        for agent in agents:
            asyncio.run(insert_agent(store, agent))
        # The serving connection never checkpoints; the thread copies the log into the file.
        deadline = time.monotonic() + CHECKPOINT_WAIT_S
        while db_path.stat().st_size <= size_before and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        assert db_path.stat().st_size > size_before
    finally:
        asyncio.run(store.close())
    assert _checkpointer_threads() == []
    reopened = _open(db_path)
    try:
        assert asyncio.run(reopened.count_agents()) == len(agents)
        listed = asyncio.run(reopened.list_agents(AgentQuery(), Page(limit=1000, ascending=True)))
        assert _ids(listed) == _ids(agents)
    finally:
        asyncio.run(reopened.close())


def test_store_without_background_checkpoints_runs_no_thread(db_path: Path) -> None:
    store = _open(db_path)
    try:
        assert _checkpointer_threads() == []
    finally:
        asyncio.run(store.close())


def test_ids_made_by_entropy_are_valid(entropy: Entropy) -> None:
    assert is_valid_id(AGENT_PREFIX, agent_config(entropy, "ada").id)
    assert is_valid_id(BLOCK_PREFIX, new_block(entropy, "human").id)
    assert is_valid_id(TOOL_PREFIX, _tool(entropy, "lookup").id)


# Agent-file imports: one transaction --------------------------------------------------


def _message(entropy: Entropy, agent: AgentConfig, text: str, at: dt.datetime) -> Message:
    return Message(
        id=entropy.new_id(MESSAGE_PREFIX), agent_id=agent.id, role="user", text=text, created_at=at
    )


def _import_batch(entropy: Entropy, stored_tool: Tool) -> AgentsImport:
    """Two agents sharing a block and a new tool; the first has a block of its own, a tag
    and a message; the stored tool is redefined."""
    shared = new_block(entropy, "policies", "Returns within 30 days")
    tool = _tool(entropy, "lookup_order")
    first, second = agent_config(entropy, "harbor"), agent_config(entropy, "sleeptime")
    own = new_block(entropy, "human", "Name: Priya")
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
                messages=(_message(entropy, first, "Where is my order?", at(1)),),
            ),
            NewAgent(agent=second, block_ids=(shared.id,), tool_ids=(tool.id,)),
        ),
    )


def test_import_agents_writes_every_part(store: SqliteStore, entropy: Entropy) -> None:
    stored_tool = _tool(entropy, "shout", description="original")
    asyncio.run(store.insert_tool(stored_tool))
    batch = _import_batch(entropy, stored_tool)
    first, second = batch.agents

    asyncio.run(store.import_agents(batch))

    ids = [first.agent.id, second.agent.id]
    assert [_config(asyncio.run(store.get_agent(i))) for i in ids] == [first.agent, second.agent]
    blocks = asyncio.run(store.blocks_of_agents(ids))
    assert sorted(_ids(blocks[first.agent.id])) == sorted(first.block_ids)
    assert _ids(blocks[second.agent.id]) == list(second.block_ids)
    tools = asyncio.run(store.tools_of_agents(ids))
    assert sorted(_ids(tools[first.agent.id])) == sorted(first.tool_ids)
    assert asyncio.run(store.tags_of_agents(ids)) == {ids[0]: ["support"], ids[1]: []}
    assert asyncio.run(store.get_messages([first.messages[0].id])) == list(first.messages)
    replaced = asyncio.run(store.get_tool(stored_tool.id))
    assert replaced is not None
    assert replaced.description == "redefined"


def test_import_agents_is_all_or_nothing(store: SqliteStore, entropy: Entropy) -> None:
    stored_tool = _tool(entropy, "shout", description="original")
    asyncio.run(store.insert_tool(stored_tool))
    batch = _import_batch(entropy, stored_tool)
    # The second agent breaks a rule only the database checks: its id is taken.
    clash = batch.agents[1].agent.model_copy(update={"id": batch.agents[0].agent.id})
    broken = AgentsImport(
        tools_created=batch.tools_created,
        tools_replaced=batch.tools_replaced,
        blocks_created=batch.blocks_created,
        agents=(batch.agents[0], NewAgent(agent=clash)),
    )

    with pytest.raises(StorageConflict):
        asyncio.run(store.import_agents(broken))

    assert asyncio.run(store.get_agent(batch.agents[0].agent.id)) is None
    assert asyncio.run(store.get_tools([batch.tools_created[0].id])) == []
    assert asyncio.run(store.get_blocks([batch.blocks_created[0].id])) == []
    assert asyncio.run(store.get_messages([batch.agents[0].messages[0].id])) == []
    assert asyncio.run(store.get_tool(stored_tool.id)) == stored_tool


def test_import_agents_redefining_a_deleted_tool_is_a_conflict(
    store: SqliteStore, entropy: Entropy
) -> None:
    vanished = _tool(entropy, "shout")
    batch = _import_batch(entropy, vanished)

    with pytest.raises(StorageConflict, match="deleted during the import"):
        asyncio.run(store.import_agents(batch))

    assert asyncio.run(store.get_agent(batch.agents[0].agent.id)) is None
    assert asyncio.run(store.get_tools([batch.tools_created[0].id])) == []

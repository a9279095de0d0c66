"""The MCP-servers role of the Store, the same assertions on every backend (SQLite and
PostgreSQL): round trips and not-found, list order, name conflicts that write nothing, a
replace that keeps the ids of tools it still lists, drops the others with their links and
attaches new ones to the agents that had the whole server, and a delete that cascades."""

import datetime as dt
from collections.abc import Sequence

import pytest

from kelpie.env import Entropy
from kelpie.schemas import MCP_SERVER_PREFIX, TOOL_PREFIX, McpServer, Tool, us_from_datetime
from kelpie.storage import Page, StorageConflict, StorageUnavailable

from ._backends import Backend, Conformance
from ._support import T0, agent_config, at

ALL = Page(limit=100, ascending=True)


def _server(entropy: Entropy, name: str, *, created_at: dt.datetime = T0) -> McpServer:
    return McpServer(
        id=entropy.new_id(MCP_SERVER_PREFIX),
        server_name=name,
        mcp_server_type="streamable_http",
        server_url=f"https://{name}.example/mcp",
        custom_headers={"x-team": name},
        created_at=created_at,
        updated_at=created_at,
    )


def _tool(entropy: Entropy, name: str, *, at_time: dt.datetime = T0) -> Tool:
    return Tool(
        id=entropy.new_id(TOOL_PREFIX),
        name=name,
        description=f"{name} over MCP",
        tool_type="external_mcp",
        created_at=at_time,
        updated_at=at_time,
    )


def _names(tools: Sequence[Tool]) -> list[str]:
    return [tool.name for tool in tools]


async def _agent_tool_names(store: Conformance, agent_id: str) -> list[str]:
    return sorted(_names(await store.list_agent_tools(agent_id, ALL)))


def test_insert_round_trips_and_unknown_is_none(backend: Backend, entropy: Entropy) -> None:
    server = _server(entropy, "files")
    tools = [_tool(entropy, "write"), _tool(entropy, "read")]

    async def scenario(store: Conformance) -> None:
        await store.insert_mcp_server(server, tools)
        assert await store.get_mcp_server(server.id) == server
        assert await store.get_mcp_server_by_name("files") == server
        assert await store.mcp_server_tools(server.id) == sorted(tools, key=lambda t: t.name)
        assert await store.get_tool(tools[0].id) == tools[0]
        unknown = entropy.new_id(MCP_SERVER_PREFIX)
        assert await store.get_mcp_server(unknown) is None
        assert await store.get_mcp_server_by_name("FILES") is None
        assert await store.mcp_server_tools(unknown) == []

    backend.run(scenario)


def test_list_orders_by_created_at_then_id(backend: Backend, entropy: Entropy) -> None:
    late = _server(entropy, "late", created_at=at(9))
    same = sorted(
        (_server(entropy, f"same{index}", created_at=at(3)) for index in range(4)),
        key=lambda s: s.id,
    )

    async def scenario(store: Conformance) -> None:
        assert await store.list_mcp_servers() == []
        for server in [late, *reversed(same)]:
            await store.insert_mcp_server(server, [])
        assert await store.list_mcp_servers() == [*same, late]

    backend.run(scenario)


def test_a_taken_name_is_a_conflict_that_writes_nothing(backend: Backend, entropy: Entropy) -> None:
    first = _server(entropy, "files")
    plain = Tool(id=entropy.new_id(TOOL_PREFIX), name="lookup", created_at=T0, updated_at=T0)

    async def scenario(store: Conformance) -> None:
        await store.insert_mcp_server(first, [_tool(entropy, "read")])
        await store.insert_tool(plain)
        same_name = _server(entropy, "files")
        with pytest.raises(StorageConflict):
            await store.insert_mcp_server(same_name, [_tool(entropy, "other")])
        # A tool named like a stored tool fails the whole server, not just the tool.
        clashing = _server(entropy, "web")
        with pytest.raises(StorageConflict):
            await store.insert_mcp_server(
                clashing, [_tool(entropy, "fetch"), _tool(entropy, "lookup")]
            )
        assert await store.list_mcp_servers() == [first]
        assert await store.get_mcp_server(clashing.id) is None
        assert await store.get_tools_by_name(["other", "fetch"]) == []
        # Renaming onto another server's name is a conflict too.
        second = _server(entropy, "web")
        await store.insert_mcp_server(second, [])
        renamed = second.model_copy(update={"server_name": "files", "updated_at": at(1)})
        with pytest.raises(StorageConflict):
            await store.replace_mcp_server(renamed, [])
        assert await store.get_mcp_server(second.id) == second

    backend.run(scenario)


def test_replace_keeps_listed_tools_drops_the_rest_and_follows_whole_server_agents(
    backend: Backend, entropy: Entropy
) -> None:
    server = _server(entropy, "files")
    read, write, stat = (_tool(entropy, name) for name in ("read", "write", "stat"))
    whole = agent_config(entropy, "whole")
    partial = agent_config(entropy, "partial")
    named = agent_config(entropy, "named")
    later = at(60)
    refreshed = server.model_copy(
        update={"server_url": "https://files.example/v2", "updated_at": later}
    )
    # The refresh lists read (a new id, which the store replaces by the stored one) and a new
    # tool, and no longer lists write and stat.
    read_again = _tool(entropy, "read", at_time=later).model_copy(update={"description": "v2"})
    grep = _tool(entropy, "grep", at_time=later)

    async def scenario(store: Conformance) -> None:
        await store.insert_mcp_server(server, [read, write, stat])
        for agent, tool_ids in (
            (whole, [read.id, write.id, stat.id]),
            (partial, [read.id]),
            (named, []),
        ):
            await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=tool_ids, tags=())
        stored = await store.replace_mcp_server(refreshed, [read_again, grep], attach_to=[named.id])
        assert stored is not None
        by_name = {tool.name: tool for tool in stored}
        assert sorted(by_name) == ["grep", "read"]
        assert (by_name["read"].id, by_name["read"].created_at) == (read.id, T0)
        assert by_name["read"].description == "v2"
        assert by_name["grep"] == grep
        assert await store.mcp_server_tools(server.id) == [by_name["grep"], by_name["read"]]
        assert await store.get_mcp_server(server.id) == refreshed
        assert await store.get_tools([write.id, stat.id]) == []
        assert await _agent_tool_names(store, whole.id) == ["grep", "read"]
        assert await _agent_tool_names(store, partial.id) == ["read"]
        assert await _agent_tool_names(store, named.id) == ["grep", "read"]
        for agent, touched in ((whole, True), (partial, False), (named, True)):
            stored_agent = await store.get_agent(agent.id)
            assert stored_agent is not None
            assert us_from_datetime(stored_agent.updated_at) == us_from_datetime(
                later if touched else T0
            )

    backend.run(scenario)


def test_replace_of_an_unknown_server_is_none_and_writes_nothing(
    backend: Backend, entropy: Entropy
) -> None:
    server = _server(entropy, "files")
    tool = _tool(entropy, "read")

    async def scenario(store: Conformance) -> None:
        assert await store.replace_mcp_server(server, [tool]) is None
        assert await store.get_mcp_server(server.id) is None
        assert await store.get_tool(tool.id) is None

    backend.run(scenario)


def test_delete_cascades_to_tools_and_links_once(backend: Backend, entropy: Entropy) -> None:
    server = _server(entropy, "files")
    other = _server(entropy, "web")
    tools = [_tool(entropy, "read"), _tool(entropy, "write")]
    fetch = _tool(entropy, "fetch")
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        await store.insert_mcp_server(server, tools)
        await store.insert_mcp_server(other, [fetch])
        await store.insert_agent(
            agent, new_blocks=(), block_ids=(), tool_ids=[t.id for t in [*tools, fetch]], tags=()
        )
        assert await store.delete_mcp_server(server.id) is True
        assert await store.delete_mcp_server(server.id) is False
        assert await store.get_mcp_server(server.id) is None
        assert await store.get_tools([tool.id for tool in tools]) == []
        assert await store.mcp_server_tools(server.id) == []
        assert await _agent_tool_names(store, agent.id) == ["fetch"]
        assert await store.list_mcp_servers() == [other]
        # The name is free again.
        await store.insert_mcp_server(_server(entropy, "files"), [_tool(entropy, "read")])

    backend.run(scenario)


def test_a_closed_store_is_storage_unavailable(backend: Backend, entropy: Entropy) -> None:
    async def scenario(store: Conformance) -> None:
        await store.close()
        with pytest.raises(StorageUnavailable):
            await store.list_mcp_servers()
        with pytest.raises(StorageUnavailable):
            await store.insert_mcp_server(_server(entropy, "files"), [])

    backend.run(scenario)

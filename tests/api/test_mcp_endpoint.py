"""Kelpie as an MCP server: the official `mcp` client, over streamable HTTP, finds an
agent, talks to it, reads and edits its core memory and uses its archival memory, through
`/v1/mcp`; the same tools' failures come back as MCP tool errors, not broken sessions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from letta_client import Letta
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from ._support import ScriptedLlm, new_agent, reply, unique

EXPECTED_TOOLS = {
    "list_agents",
    "send_message",
    "get_core_memory",
    "update_core_memory",
    "search_archival_memory",
    "insert_archival_memory",
}


def _with_session(
    base_url: str,
    use: Callable[[ClientSession], Awaitable[Any]],
    headers: dict[str, str] | None = None,
) -> Any:
    async def session() -> Any:
        client = httpx2.AsyncClient(timeout=30)
        async with (
            client,
            streamable_http_client(f"{base_url}/v1/mcp", http_client=client) as (
                read,
                write,
            ),
        ):
            async with ClientSession(read, write) as mcp_session:
                await mcp_session.initialize()
                return await use(mcp_session)

    return asyncio.run(session())


def _data(result: Any) -> Any:
    """A tool result's value: its structured content, else its text as JSON."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        value = result.structured_content
        return value.get("result", value) if isinstance(value, dict) else value
    return json.loads(result.content[0].text)


class TestKelpieAsAnMcpServer:
    def test_it_lists_its_tools(self, kelpie_server: str) -> None:
        async def use(session: ClientSession) -> set[str]:
            return {tool.name for tool in (await session.list_tools()).tools}

        assert _with_session(kelpie_server, use) >= EXPECTED_TOOLS

    def test_a_client_finds_an_agent_and_talks_to_it(
        self, kelpie_server: str, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, name=unique("mcp-agent"))
        script.enqueue(reply("Hello from Kelpie."))

        async def use(session: ClientSession) -> tuple[Any, Any]:
            found = await session.call_tool("list_agents", {"name": agent.name})
            said = await session.call_tool(
                "send_message", {"agent_id": agent.id, "message": "Hi there"}
            )
            return _data(found), _data(said)

        found, said = _with_session(kelpie_server, use)

        assert [a["id"] for a in found] == [agent.id]
        assert said["reply"] == "Hello from Kelpie."
        history = list(client.agents.messages.list(agent.id, order="asc"))
        assert any(
            m.message_type == "user_message" and "Hi there" in str(m.content) for m in history
        )

    def test_core_memory_is_read_and_edited(self, kelpie_server: str, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Unknown."}])

        async def use(session: ClientSession) -> tuple[Any, Any]:
            edited = await session.call_tool(
                "update_core_memory",
                {"agent_id": agent.id, "label": "human", "value": "Likes kelp."},
            )
            blocks = await session.call_tool("get_core_memory", {"agent_id": agent.id})
            return _data(edited), _data(blocks)

        edited, blocks = _with_session(kelpie_server, use)

        assert edited["value"] == "Likes kelp."
        assert {b["label"]: b["value"] for b in blocks}["human"] == "Likes kelp."
        rest = client.agents.blocks.retrieve("human", agent_id=agent.id)
        assert rest.value == "Likes kelp."

    def test_archival_memory_is_added_to_and_searched(
        self, kelpie_server: str, client: Letta
    ) -> None:
        agent = new_agent(client)

        async def use(session: ClientSession) -> Any:
            await session.call_tool(
                "insert_archival_memory",
                {"agent_id": agent.id, "text": "The otter keeps a favourite stone."},
            )
            found = await session.call_tool(
                "search_archival_memory", {"agent_id": agent.id, "query": "otter stone"}
            )
            return _data(found)

        found = _with_session(kelpie_server, use)

        assert any("favourite stone" in r["content"] for r in found), found

    def test_a_failure_is_a_tool_error_and_the_session_goes_on(self, kelpie_server: str) -> None:
        async def use(session: ClientSession) -> tuple[Any, Any, Any]:
            missing = await session.call_tool(
                "get_core_memory", {"agent_id": "agent-00000000-0000-4000-8000-000000000000"}
            )
            malformed = await session.call_tool("get_core_memory", {"agent_id": "nope"})
            listed = await session.call_tool("list_agents", {"limit": 1})
            return missing, malformed, listed

        missing, malformed, listed = _with_session(kelpie_server, use)

        assert missing.is_error
        assert "not found" in missing.content[0].text.lower()
        assert malformed.is_error
        assert "agent_id" in malformed.content[0].text
        assert not listed.is_error

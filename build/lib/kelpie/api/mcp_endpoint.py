"""Kelpie as an MCP server: a streamable-HTTP MCP endpoint at `/v1/mcp` whose tools are
Kelpie's agents — list them, send one a message, read and edit its core memory, search and
add to its archival memory — so any MCP client (Claude Desktop, Cursor, letta-code, another
Kelpie agent) can use an agent as a tool. It sits behind the same guard as the REST API
(password mode applies), and every tool goes through the same services as REST does."""

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from kelpie import __version__
from kelpie.api._deps import Services
from kelpie.api._routing import checked_id
from kelpie.errors import KelpieError
from kelpie.schemas import (
    AGENT_PREFIX,
    SEARCH_RESULTS_MAX,
    BlockUpdate,
    LettaRequest,
    MessageCreate,
    PassageCreate,
)
from kelpie.storage import AgentQuery, Page

P = ParamSpec("P")
T = TypeVar("T")

MCP_PATH: Final = "/v1/mcp"
AGENTS_LISTED_MAX: Final = 200
_INSTRUCTIONS: Final = (
    "Kelpie runs stateful agents with long-term memory. Find an agent with list_agents, "
    "talk to it with send_message, and read or change what it remembers with the memory tools."
)


def _told(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A tool whose Kelpie errors (not found, invalid input, ...) reach the client as the
    tool's error text; the SDK hides any other exception's message."""

    @functools.wraps(function)
    async def told(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await function(*args, **kwargs)
        except KelpieError as error:
            raise ToolError(str(error)) from error

    return told


def _agent(agent_id: str) -> str:
    return checked_id(AGENT_PREFIX, agent_id, "agent_id")


def build_mcp_server(services: Services) -> MCPServer[Any]:
    """The MCP server whose tools act on Kelpie's agents through `services`."""
    server: MCPServer[Any] = MCPServer(
        name="kelpie", version=__version__, instructions=_INSTRUCTIONS
    )

    @server.tool()
    @_told
    async def list_agents(name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Lists agents, newest last: their ids, names and descriptions.

        Args:
            name: Only the agent with exactly this name.
            limit: At most this many (1 to 200).
        """
        page = Page(limit=max(1, min(limit, AGENTS_LISTED_MAX)))
        agents = await services.agents.list_agents(AgentQuery(name=name), page, ())
        return [{"id": a.id, "name": a.name, "description": a.description} for a in agents]

    @server.tool()
    @_told
    async def send_message(agent_id: str, message: str) -> dict[str, Any]:
        """Sends the agent a message as its user and waits for its turn to end.

        Args:
            agent_id: The agent's id (agent-...).
            message: What to say.
        """
        request = LettaRequest(messages=[MessageCreate(role="user", content=message)])
        response = await services.messages.send_and_wait(_agent(agent_id), None, request)
        replies = [
            m.content
            for m in response.messages
            if m.message_type == "assistant_message" and isinstance(m.content, str)
        ]
        return {
            "reply": "\n".join(replies),
            "stop_reason": response.stop_reason.stop_reason,
            "messages": [m.model_dump(mode="json", exclude_none=True) for m in response.messages],
        }

    @server.tool()
    @_told
    async def get_core_memory(agent_id: str) -> list[dict[str, Any]]:
        """The agent's core memory blocks: label, value, limit and description of each.

        Args:
            agent_id: The agent's id (agent-...).
        """
        agent = await services.agents.retrieve(_agent(agent_id), ("agent.blocks",))
        return [
            {
                "label": block.label,
                "value": block.value,
                "limit": block.limit,
                "description": block.description,
            }
            for block in agent.blocks
        ]

    @server.tool()
    @_told
    async def update_core_memory(agent_id: str, label: str, value: str) -> dict[str, Any]:
        """Replaces the value of one of the agent's core memory blocks.

        Args:
            agent_id: The agent's id (agent-...).
            label: The block's label, e.g. "human" or "persona".
            value: The block's new value (within the block's character limit).
        """
        block = await services.agents.update_block(
            _agent(agent_id), label, BlockUpdate(value=value)
        )
        return {"label": block.label, "value": block.value, "limit": block.limit}

    @server.tool()
    @_told
    async def search_archival_memory(
        agent_id: str, query: str, top_k: int = 10
    ) -> list[dict[str, Any]]:
        """Searches the agent's archival memory (semantic and keyword), best first.

        Args:
            agent_id: The agent's id (agent-...).
            query: What to look for.
            top_k: At most this many results.
        """
        found = await services.archives.search_agent_passages(
            _agent(agent_id),
            query,
            tags=[],
            match_all_tags=False,
            top_k=max(1, min(top_k, SEARCH_RESULTS_MAX)),
            start=None,
            end=None,
        )
        return [result.model_dump(mode="json", exclude_none=True) for result in found.results]

    @server.tool()
    @_told
    async def insert_archival_memory(agent_id: str, text: str) -> list[str]:
        """Adds a passage to the agent's archival memory; answers the new passages' ids.

        Args:
            agent_id: The agent's id (agent-...).
            text: What the agent should remember.
        """
        passages = await services.archives.insert_agent_passage(
            _agent(agent_id), PassageCreate(text=text)
        )
        return [passage.id for passage in passages]

    return server


class McpEndpoint:
    """The ASGI endpoint at MCP_PATH, and the session manager its lifespan runs."""

    def __init__(self, services: Services, *, host: str) -> None:
        server = build_mcp_server(services)
        # Builds the session manager (the Starlette app itself is not used: the route
        # below hands requests to the manager, behind Kelpie's own guard).
        server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
        self._manager: StreamableHTTPSessionManager = server.session_manager

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Runs the session manager for the app's life. Its context (an anyio task group)
        must be left by the task that entered it, so a task of its own holds it: the app's
        lifespan may be entered and left by different tasks (the simulator's restarts)."""
        ready, stop = asyncio.Event(), asyncio.Event()

        async def own() -> None:
            async with self._manager.run():
                ready.set()
                await stop.wait()

        owner = asyncio.ensure_future(own())
        waiting = asyncio.ensure_future(ready.wait())
        await asyncio.wait({owner, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if owner.done():
            owner.result()  # it failed to start: raise why
        try:
            yield
        finally:
            stop.set()
            await owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(scope, receive, send)

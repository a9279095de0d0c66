"""MCP servers: registered with their config, their tools discovered by connecting (an
unreachable server is a 400 at create time, not a surprise later) and stored as tool
records of type `external_mcp`, attachable like any tool. Refresh re-lists the tools:
new ones are added (and attached to every agent that had all of the server's tools, so an
agent given a whole server stays in step), gone ones are deleted with their links."""

from collections.abc import Mapping, Sequence
from typing import Any

from kelpie.env import Env
from kelpie.errors import Conflict, InvalidInput, NotFound
from kelpie.mcp import McpTool, McpUnavailable
from kelpie.schemas import (
    MCP_SERVER_PREFIX,
    TOOL_PREFIX,
    McpServer,
    McpServerCreate,
    McpServerUpdate,
    Tool,
    ToolExecutionResult,
    datetime_from_us,
)
from kelpie.tools import call_mcp_tool, mcp_spec, mcp_tool_record, server_id_of


class McpServerService:
    def __init__(self, env: Env) -> None:
        self._env = env

    async def create(self, request: McpServerCreate) -> McpServer:
        store = self._env.store
        if await store.get_mcp_server_by_name(request.server_name) is not None:
            raise Conflict(f"MCP server with name '{request.server_name}' already exists")
        now = self._env.clock.now_us()
        server = McpServer(
            id=self._env.entropy.new_id(MCP_SERVER_PREFIX),
            server_name=request.server_name,
            **request.config.model_dump(),
            created_at=datetime_from_us(now),
            updated_at=datetime_from_us(now),
        )
        listed = await self._list_tools(server)
        tools = await self._records(server, listed, now)
        await store.insert_mcp_server(server, tools)
        return server

    async def list_servers(self) -> list[McpServer]:
        return await self._env.store.list_mcp_servers()

    async def retrieve(self, server_id: str) -> McpServer:
        server = await self._env.store.get_mcp_server(server_id)
        if server is None:
            raise NotFound(f"MCP server {server_id} not found")
        return server

    async def by_name(self, name: str) -> McpServer:
        server = await self._env.store.get_mcp_server_by_name(name)
        if server is None:
            raise NotFound(f"MCP server '{name}' not found")
        return server

    async def update(self, server_id: str, request: McpServerUpdate) -> McpServer:
        server = await self.retrieve(server_id)
        changes: dict[str, Any] = {}
        if request.server_name is not None and request.server_name != server.server_name:
            if await self._env.store.get_mcp_server_by_name(request.server_name) is not None:
                raise Conflict(f"MCP server with name '{request.server_name}' already exists")
            changes["server_name"] = request.server_name
        if request.config is not None:
            if request.config.mcp_server_type != server.mcp_server_type:
                raise InvalidInput(
                    f"MCP server '{server.server_name}' is {server.mcp_server_type}; its"
                    f" config cannot become {request.config.mcp_server_type}"
                )
            changes |= request.config.model_dump(exclude_unset=True, exclude_none=True)
        now = self._env.clock.now_us()
        updated = McpServer.model_validate(
            {**server.model_dump(), **changes, "updated_at": datetime_from_us(now)}
        )
        await self._env.mcp.forget(server.id)
        await self._sync(updated, now)
        return updated

    async def declare(self, request: McpServerCreate) -> str:
        """Makes a server declared at start-up match its declaration: created if new,
        updated if its config changed, left alone otherwise. Answers what was done."""
        existing = await self._env.store.get_mcp_server_by_name(request.server_name)
        if existing is None:
            await self.create(request)
            return "created"
        wanted = request.config.model_dump()
        current = existing.model_dump()
        if all(current.get(key) == value for key, value in wanted.items()):
            return "unchanged"
        if existing.mcp_server_type != request.config.mcp_server_type:
            await self.delete(existing.id)
            await self.create(request)
            return "replaced"
        await self.update(existing.id, McpServerUpdate.model_validate({"config": wanted}))
        return "updated"

    async def delete(self, server_id: str) -> None:
        if not await self._env.store.delete_mcp_server(server_id):
            raise NotFound(f"MCP server {server_id} not found")
        await self._env.mcp.forget(server_id)

    async def tools(self, server_id: str) -> list[Tool]:
        await self.retrieve(server_id)
        return await self._env.store.mcp_server_tools(server_id)

    async def tool(self, server_id: str, tool_id: str) -> Tool:
        for tool in await self.tools(server_id):
            if tool.id == tool_id:
                return tool
        raise NotFound(f"Tool {tool_id} not found on MCP server {server_id}")

    async def tool_named(self, server_id: str, name: str) -> Tool:
        for tool in await self.tools(server_id):
            if tool.name == name:
                return tool
        raise NotFound(f"Tool '{name}' not found on MCP server {server_id}")

    async def servers_of(self, tools: Sequence[Tool]) -> list[McpServer]:
        """The servers the given tools (an agent's) come from, by creation."""
        servers = []
        for server_id in sorted({sid for tool in tools if (sid := server_id_of(tool))}):
            server = await self._env.store.get_mcp_server(server_id)
            if server is not None:
                servers.append(server)
        return sorted(servers, key=lambda server: (server.created_at, server.id))

    async def run(self, tool: Tool, args: Mapping[str, Any]) -> ToolExecutionResult:
        done = await call_mcp_tool(
            self._env.store,
            self._env.mcp,
            tool,
            args,
            timeout_s=self._env.config.tool_timeout_s,
        )
        text = done.returned or ""
        return ToolExecutionResult(
            status="success" if done.ok else "error",
            func_return=text,
            stderr=[] if done.ok else [text],
        )

    async def refresh(self, server_id: str, agent_id: str | None = None) -> dict[str, Any]:
        """Re-lists the server's tools (agents that had all of them get the new ones too);
        with `agent_id`, attaches all of them to that agent as well. Answers what changed."""
        server = await self.retrieve(server_id)
        if agent_id is not None and await self._env.store.get_agent(agent_id) is None:
            raise NotFound(f"Agent {agent_id} not found")
        before = {tool.name for tool in await self._env.store.mcp_server_tools(server_id)}
        now = self._env.clock.now_us()
        server = server.model_copy(update={"updated_at": datetime_from_us(now)})
        stored = await self._sync(server, now, attach_to=() if agent_id is None else (agent_id,))
        names = [tool.name for tool in stored]
        return {
            "message": f"Refreshed MCP server '{server.server_name}'",
            "added": sorted(set(names) - before),
            "removed": sorted(before - set(names)),
            "tools": names,
        }

    async def _sync(
        self, server: McpServer, now_us: int, *, attach_to: Sequence[str] = ()
    ) -> list[Tool]:
        listed = await self._list_tools(server)
        tools = await self._records(server, listed, now_us)
        stored = await self._env.store.replace_mcp_server(server, tools, attach_to)
        if stored is None:
            raise NotFound(f"MCP server {server.id} not found")
        return stored

    async def _list_tools(self, server: McpServer) -> list[McpTool]:
        try:
            return await self._env.mcp.list_tools(mcp_spec(server))
        except McpUnavailable as error:
            raise InvalidInput(str(error)) from error

    async def _records(
        self, server: McpServer, listed: Sequence[McpTool], now_us: int
    ) -> list[Tool]:
        """Tool records for the listed tools; a name another tool already holds is a 409."""
        names = [tool.name for tool in listed]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidInput(
                f"MCP server '{server.server_name}' lists tools more than once: {duplicates}"
            )
        taken = [
            tool.name
            for tool in await self._env.store.get_tools_by_name(names)
            if tool.tool_type != "external_mcp" or server_id_of(tool) != server.id
        ]
        if taken:
            raise Conflict(
                f"MCP server '{server.server_name}' has tools named like existing tools:"
                f" {sorted(taken)}"
            )
        return [
            mcp_tool_record(
                server, tool, tool_id=self._env.entropy.new_id(TOOL_PREFIX), now_us=now_us
            )
            for tool in listed
        ]

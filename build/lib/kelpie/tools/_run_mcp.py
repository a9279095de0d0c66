"""MCP tools: a tool record of type `external_mcp` names its server (in `metadata_.mcp`);
a call goes to that server over the connection `Env.mcp` keeps for it."""

from collections.abc import Mapping
from typing import Any

from kelpie.mcp import McpClients, McpServerSpec, McpTool, McpUnavailable
from kelpie.schemas import (
    MCP_METADATA_KEY,
    MCP_TOOL_TAG_PREFIX,
    McpServer,
    Tool,
    datetime_from_us,
)
from kelpie.storage import Store
from kelpie.tools._returned import ToolReturn
from kelpie.tools._session import ToolSession


def mcp_spec(server: McpServer) -> McpServerSpec:
    """How to reach the server a record describes."""
    if server.mcp_server_type == "stdio":
        assert server.command is not None, "a stdio server record without a command"
        sandbox = server.sandbox
        return McpServerSpec(
            key=server.id,
            name=server.server_name,
            transport="stdio",
            command=server.command,
            args=tuple(server.args or ()),
            env=dict(server.env or {}),
            network=sandbox is not None and sandbox.network,
            read_only_paths=() if sandbox is None else tuple(sandbox.read_only_paths),
            read_write_paths=() if sandbox is None else tuple(sandbox.read_write_paths),
        )
    headers = dict(server.custom_headers or {})
    if server.auth_token:
        # Letta's rule: a token without a header name is a bearer token.
        if server.auth_header:
            headers[server.auth_header] = server.auth_token
        else:
            headers["Authorization"] = f"Bearer {server.auth_token}"
    return McpServerSpec(
        key=server.id,
        name=server.server_name,
        transport=server.mcp_server_type,
        url=server.server_url,
        headers=headers,
    )


def server_id_of(tool: Tool) -> str | None:
    mcp = (tool.metadata_ or {}).get(MCP_METADATA_KEY)
    server_id = mcp.get("server_id") if isinstance(mcp, dict) else None
    return server_id if isinstance(server_id, str) else None


def mcp_tool_record(server: McpServer, tool: McpTool, *, tool_id: str, now_us: int) -> Tool:
    """The Tool record of one of a server's tools (its name, description and schema)."""
    now = datetime_from_us(now_us)
    parameters = dict(tool.input_schema)
    parameters.setdefault("type", "object")
    parameters.setdefault("properties", {})
    return Tool(
        id=tool_id,
        name=tool.name,
        description=tool.description,
        tool_type="external_mcp",
        json_schema={
            "name": tool.name,
            "description": tool.description or "",
            "parameters": parameters,
        },
        tags=[f"{MCP_TOOL_TAG_PREFIX}{server.server_name}"],
        metadata_={MCP_METADATA_KEY: {"server_id": server.id, "server_name": server.server_name}},
        created_at=now,
        updated_at=now,
    )


async def call_mcp_tool(
    store: Store,
    clients: McpClients,
    tool: Tool,
    arguments: Mapping[str, Any],
    *,
    timeout_s: float,
) -> ToolReturn:
    """One call of an MCP tool; every failure is an error return saying what happened."""
    server_id = server_id_of(tool)
    server = None if server_id is None else await store.get_mcp_server(server_id)
    if server is None:
        return ToolReturn(f"Tool '{tool.name}' cannot run: its MCP server is gone", ok=False)
    try:
        result = await clients.call_tool(
            mcp_spec(server), tool.name, arguments, timeout_s=timeout_s
        )
    except McpUnavailable as error:
        return ToolReturn(f"Error executing MCP tool {tool.name}: {error}", ok=False)
    return ToolReturn(result.text, ok=not result.is_error)


class McpToolRunner:
    def __init__(self, store: Store, clients: McpClients, *, timeout_s: float) -> None:
        self._store = store
        self._clients = clients
        self._timeout_s = timeout_s

    def runs_concurrently(self, tool: Tool) -> bool:
        """An MCP tool touches nothing of the agent's that another call of the step sees."""
        return True

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        return await call_mcp_tool(
            self._store, self._clients, tool, arguments, timeout_s=self._timeout_s
        )

"""MCP servers: `/v1/mcp-servers/…`, and the name-keyed `/v1/tools/mcp/servers/…` routes
letta-code still calls (letta-api.md §1.9, §3.8)."""

from fastapi import Response
from fastapi.responses import JSONResponse

from kelpie.api._deps import ServicesDep
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.schemas import (
    AGENT_PREFIX,
    MCP_SERVER_PREFIX,
    TOOL_PREFIX,
    McpServerCreate,
    McpServerUpdate,
    McpToolRunRequest,
    Tool,
    ToolExecutionResult,
)

router = LettaRouter(prefix="/v1/mcp-servers", tags=["mcp servers"])
by_name_router = LettaRouter(prefix="/v1/tools/mcp/servers", tags=["mcp servers"])


def _server_id(server_id: str) -> str:
    return checked_id(MCP_SERVER_PREFIX, server_id, "mcp_server_id")


@router.post("")
async def create_mcp_server(body: McpServerCreate, services: ServicesDep) -> JSONResponse:
    """Connects to the server and stores it with its tools; unreachable is a 400."""
    return JSONResponse((await services.mcp_servers.create(body)).letta_shape())


@router.get("")
async def list_mcp_servers(services: ServicesDep) -> JSONResponse:
    return JSONResponse([s.letta_shape() for s in await services.mcp_servers.list_servers()])


@router.get("/{mcp_server_id}")
async def retrieve_mcp_server(mcp_server_id: str, services: ServicesDep) -> JSONResponse:
    server = await services.mcp_servers.retrieve(_server_id(mcp_server_id))
    return JSONResponse(server.letta_shape())


@router.patch("/{mcp_server_id}")
async def update_mcp_server(
    mcp_server_id: str, body: McpServerUpdate, services: ServicesDep
) -> JSONResponse:
    server = await services.mcp_servers.update(_server_id(mcp_server_id), body)
    return JSONResponse(server.letta_shape())


@router.delete("/{mcp_server_id}", status_code=204)
async def delete_mcp_server(mcp_server_id: str, services: ServicesDep) -> Response:
    """Deletes the server, its tools and every agent's link to them."""
    await services.mcp_servers.delete(_server_id(mcp_server_id))
    return Response(status_code=204)


@router.get("/{mcp_server_id}/tools", response_model=list[Tool])
async def list_mcp_server_tools(mcp_server_id: str, services: ServicesDep) -> Response:
    return json_response(await services.mcp_servers.tools(_server_id(mcp_server_id)))


@router.get("/{mcp_server_id}/tools/{tool_id}", response_model=Tool)
async def retrieve_mcp_server_tool(
    mcp_server_id: str, tool_id: str, services: ServicesDep
) -> Response:
    tool_id = checked_id(TOOL_PREFIX, tool_id, "tool_id")
    return json_response(await services.mcp_servers.tool(_server_id(mcp_server_id), tool_id))


@router.post("/{mcp_server_id}/tools/{tool_id}/run", response_model=ToolExecutionResult)
async def run_mcp_server_tool(
    mcp_server_id: str, tool_id: str, body: McpToolRunRequest, services: ServicesDep
) -> Response:
    tool_id = checked_id(TOOL_PREFIX, tool_id, "tool_id")
    tool = await services.mcp_servers.tool(_server_id(mcp_server_id), tool_id)
    return json_response(await services.mcp_servers.run(tool, body.args))


@router.patch("/{mcp_server_id}/refresh")
async def refresh_mcp_server(
    mcp_server_id: str, services: ServicesDep, agent_id: str | None = None
) -> JSONResponse:
    """Re-lists the server's tools. With `agent_id`, attaches all of them to that agent;
    agents that had all of them get new ones anyway."""
    if agent_id is not None:
        agent_id = checked_id(AGENT_PREFIX, agent_id, "agent_id")
    return JSONResponse(await services.mcp_servers.refresh(_server_id(mcp_server_id), agent_id))


@by_name_router.get("/{server_name}/tools", response_model=list[Tool])
async def list_tools_by_server_name(server_name: str, services: ServicesDep) -> Response:
    server = await services.mcp_servers.by_name(server_name)
    return json_response(await services.mcp_servers.tools(server.id))


@by_name_router.post("/{server_name}/{tool_name}/execute", response_model=ToolExecutionResult)
async def execute_tool_by_server_name(
    server_name: str, tool_name: str, body: McpToolRunRequest, services: ServicesDep
) -> Response:
    server = await services.mcp_servers.by_name(server_name)
    tool = await services.mcp_servers.tool_named(server.id, tool_name)
    return json_response(await services.mcp_servers.run(tool, body.args))

"""Agents: `/v1/agents/…` (CRUD, core-memory blocks, tools) and `/v1/tags/`."""

from typing import Annotated, Literal

from fastapi import Body, Depends, Query, Response
from fastapi.responses import JSONResponse

from kelpie.api._deps import ServicesDep
from kelpie.api._params import Limit, page_params
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.errors import InvalidInput
from kelpie.schemas import (
    AGENT_PREFIX,
    BLOCK_PREFIX,
    TOOL_PREFIX,
    AgentCreate,
    AgentInclude,
    AgentState,
    AgentUpdate,
    Block,
    BlockUpdate,
    Secret,
    Tool,
    ToolExecutionResult,
    ToolRunRequest,
)
from kelpie.storage import AgentQuery, Page

Page50 = Annotated[Page, Depends(page_params(50))]
Page100 = Annotated[Page, Depends(page_params(100))]
Page10 = Annotated[Page, Depends(page_params(10))]

router = LettaRouter(prefix="/v1/agents", tags=["agents"])
tags_router = LettaRouter(prefix="/v1/tags", tags=["tags"])

Include = Annotated[list[AgentInclude], Query()]


def _agent_id(agent_id: str) -> str:
    return checked_id(AGENT_PREFIX, agent_id, "agent_id")


@router.post("", response_model=AgentState)
async def create_agent(body: AgentCreate, services: ServicesDep) -> Response:
    return json_response(await services.agents.create(body))


@router.get("", response_model=list[AgentState])
async def list_agents(
    services: ServicesDep,
    page: Page50,
    name: str | None = None,
    tags: Annotated[list[str] | None, Query()] = None,
    match_all_tags: bool = False,
    query_text: str | None = None,
    order_by: Literal["created_at", "updated_at", "last_run_completion"] = "created_at",
    include: Include = [],  # noqa: B006 - FastAPI copies defaults per request
) -> Response:
    if order_by == "last_run_completion":
        # Agents get runs with the agent loop; until then there is nothing to order by.
        raise InvalidInput("order_by=last_run_completion is not supported yet")
    query = AgentQuery(
        name=name,
        tags=tuple(tags or ()),
        match_all_tags=match_all_tags,
        query_text=query_text,
        order_by=order_by,
    )
    return json_response(await services.agents.list_agents(query, page, include))


@router.get("/count")
async def count_agents(services: ServicesDep) -> int:
    return await services.agents.count()


@router.get("/{agent_id}", response_model=AgentState)
async def retrieve_agent(
    agent_id: str,
    services: ServicesDep,
    include: Include = [],  # noqa: B006 - FastAPI copies defaults per request
) -> Response:
    agent = await services.agents.retrieve(_agent_id(agent_id), include)
    if "agent.pending_approval" in include:
        pending = await services.messages.pending_approval(agent)
        agent.pending_approval = None if pending is None else pending.model_dump(mode="json")
    return json_response(agent)


@router.patch("/{agent_id}", response_model=AgentState)
async def update_agent(agent_id: str, body: AgentUpdate, services: ServicesDep) -> Response:
    return json_response(await services.agents.update(_agent_id(agent_id), body))


@router.delete("/{agent_id}")
async def delete_agent(agent_id: str, services: ServicesDep) -> None:
    await services.agents.delete(_agent_id(agent_id))


@router.get("/{agent_id}/core-memory/blocks", response_model=list[Block])
async def list_agent_blocks(
    agent_id: str,
    services: ServicesDep,
    page: Page100,
) -> Response:
    return json_response(await services.agents.list_blocks(_agent_id(agent_id), page))


@router.get("/{agent_id}/core-memory/blocks/{block_label}", response_model=Block)
async def retrieve_agent_block(agent_id: str, block_label: str, services: ServicesDep) -> Response:
    return json_response(await services.agents.retrieve_block(_agent_id(agent_id), block_label))


@router.patch("/{agent_id}/core-memory/blocks/{block_label}", response_model=Block)
async def update_agent_block(
    agent_id: str, block_label: str, body: BlockUpdate, services: ServicesDep
) -> Response:
    block = await services.agents.update_block(_agent_id(agent_id), block_label, body)
    return json_response(block)


@router.patch("/{agent_id}/core-memory/blocks/attach/{block_id}", response_model=AgentState)
async def attach_agent_block(agent_id: str, block_id: str, services: ServicesDep) -> Response:
    block_id = checked_id(BLOCK_PREFIX, block_id, "block_id")
    return json_response(await services.agents.attach_block(_agent_id(agent_id), block_id))


@router.patch("/{agent_id}/core-memory/blocks/detach/{block_id}", response_model=AgentState)
async def detach_agent_block(agent_id: str, block_id: str, services: ServicesDep) -> Response:
    block_id = checked_id(BLOCK_PREFIX, block_id, "block_id")
    return json_response(await services.agents.detach_block(_agent_id(agent_id), block_id))


@router.get("/{agent_id}/tools", response_model=list[Tool])
async def list_agent_tools(
    agent_id: str,
    services: ServicesDep,
    page: Page10,
) -> Response:
    return json_response(await services.agents.list_tools(_agent_id(agent_id), page))


@router.patch("/{agent_id}/tools/attach/{tool_id}", response_model=AgentState)
async def attach_agent_tool(agent_id: str, tool_id: str, services: ServicesDep) -> Response:
    tool_id = checked_id(TOOL_PREFIX, tool_id, "tool_id")
    return json_response(await services.agents.attach_tool(_agent_id(agent_id), tool_id))


@router.patch("/{agent_id}/tools/detach/{tool_id}", response_model=AgentState)
async def detach_agent_tool(agent_id: str, tool_id: str, services: ServicesDep) -> Response:
    tool_id = checked_id(TOOL_PREFIX, tool_id, "tool_id")
    return json_response(await services.agents.detach_tool(_agent_id(agent_id), tool_id))


@router.post("/{agent_id}/tools/{tool_name}/run", response_model=ToolExecutionResult)
async def run_agent_tool(
    agent_id: str, tool_name: str, body: ToolRunRequest, services: ServicesDep
) -> Response:
    """Runs one of the agent's custom tools now, with its state and secrets."""
    result = await services.tool_runs.run_for_agent(_agent_id(agent_id), tool_name, body.args)
    return json_response(result)


@router.patch("/{agent_id}/tools/approval/{tool_name}", response_model=AgentState)
async def update_tool_approval(
    agent_id: str,
    tool_name: str,
    services: ServicesDep,
    body_requires_approval: Annotated[
        bool | None, Body(alias="requires_approval", embed=True)
    ] = None,
    query_requires_approval: Annotated[bool | None, Query(alias="requires_approval")] = None,
) -> Response:
    """Adds or removes the `requires_approval` rule for one of the agent's tools."""
    wanted = (
        body_requires_approval if body_requires_approval is not None else query_requires_approval
    )
    if wanted is None:
        raise InvalidInput("requires_approval is required (in the body or the query)")
    updated = await services.agents.set_tool_approval(_agent_id(agent_id), tool_name, wanted)
    return json_response(updated)


@tags_router.get("", response_model=list[str])
async def list_tags(
    services: ServicesDep,
    after: str | None = None,
    limit: Limit = 50,
    query_text: str | None = None,
) -> list[str]:
    return await services.agents.list_tags(after=after, limit=limit, query_text=query_text)


@router.post("/{agent_id}/recompile")
async def recompile_agent(
    agent_id: str, services: ServicesDep, dry_run: bool = False, update_timestamp: bool = True
) -> str:
    """Rebuilds the system message from current memory; returns the compiled prompt."""
    return await services.agents.prompts.recompile(_agent_id(agent_id), dry_run=dry_run)


@router.get("/{agent_id}/secrets", response_model=list[Secret])
async def list_agent_secrets(agent_id: str, services: ServicesDep) -> Response:
    """The agent's tool secrets with their values: letta-code loads them for its shell."""
    agent = await services.agents.retrieve(_agent_id(agent_id), ("agent.secrets",))
    return json_response(agent.secrets)


@router.get("/{agent_id}/mcp-servers")
async def list_agent_mcp_servers(agent_id: str, services: ServicesDep) -> JSONResponse:
    """The MCP servers the agent's tools come from."""
    agent = await services.agents.retrieve(_agent_id(agent_id), ("agent.tools",))
    servers = await services.mcp_servers.servers_of(agent.tools)
    return JSONResponse([server.letta_shape() for server in servers])

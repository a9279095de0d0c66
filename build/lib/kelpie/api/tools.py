"""Tools: `/v1/tools/…`."""

from typing import Annotated

from fastapi import Depends, Query, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_params
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.schemas import (
    TOOL_PREFIX,
    Tool,
    ToolCreate,
    ToolExecutionResult,
    ToolRunFromSource,
    ToolUpdate,
)
from kelpie.storage import Page, ToolQuery

Page50 = Annotated[Page, Depends(page_params(50))]

router = LettaRouter(prefix="/v1/tools", tags=["tools"])

_LETTA_TOOL_TYPES = (
    "letta_core",
    "letta_memory_core",
    "letta_multi_agent_core",
    "letta_sleeptime_core",
    "letta_voice_sleeptime_core",
    "letta_builtin",
    "letta_files_core",
)


def _tool_id(tool_id: str) -> str:
    return checked_id(TOOL_PREFIX, tool_id, "tool_id")


@router.post("", response_model=Tool)
async def create_tool(body: ToolCreate, services: ServicesDep) -> Response:
    return json_response(await services.tools.create(body))


@router.put("", response_model=Tool)
async def upsert_tool(body: ToolCreate, services: ServicesDep) -> Response:
    return json_response(await services.tools.upsert(body))


@router.get("", response_model=list[Tool])
async def list_tools(
    services: ServicesDep,
    page: Page50,
    name: str | None = None,
    names: Annotated[list[str] | None, Query()] = None,
    tool_ids: Annotated[list[str] | None, Query()] = None,
    search: str | None = None,
    tool_types: Annotated[list[str] | None, Query()] = None,
    exclude_tool_types: Annotated[list[str] | None, Query()] = None,
    return_only_letta_tools: bool = False,
) -> Response:
    all_names = tuple([*([name] if name else []), *(names or [])])
    types = tuple(tool_types or ())
    if return_only_letta_tools:
        types = tuple(t for t in _LETTA_TOOL_TYPES if not types or t in types)
    query = ToolQuery(
        names=all_names,
        tool_ids=tuple(tool_ids or ()),
        search=search,
        tool_types=types,
        exclude_tool_types=tuple(exclude_tool_types or ()),
    )
    return json_response(await services.tools.list_tools(query, page))


@router.post("/add-base-tools", response_model=list[Tool])
async def add_base_tools(services: ServicesDep) -> Response:
    return json_response(await services.tools.add_base_tools())


@router.post("/run", response_model=ToolExecutionResult)
async def run_tool_from_source(body: ToolRunFromSource, services: ServicesDep) -> Response:
    """Runs a function from source in the sandbox without storing a tool."""
    return json_response(await services.tool_runs.run_from_source(body))


@router.get("/{tool_id}", response_model=Tool)
async def retrieve_tool(tool_id: str, services: ServicesDep) -> Response:
    return json_response(await services.tools.retrieve(_tool_id(tool_id)))


@router.patch("/{tool_id}", response_model=Tool)
async def update_tool(tool_id: str, body: ToolUpdate, services: ServicesDep) -> Response:
    return json_response(await services.tools.update(_tool_id(tool_id), body))


@router.delete("/{tool_id}")
async def delete_tool(tool_id: str, services: ServicesDep) -> None:
    await services.tools.delete(_tool_id(tool_id))

"""Working memory (a Kelpie extension): `/v1/agents/{agent_id}/working-memory/…`, an agent's
key/value scratch state with optional TTLs, shared with the agent's working-memory tools."""

from typing import Annotated

from fastapi import Depends, Path, Query, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_params
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.schemas import (
    AGENT_PREFIX,
    WORKING_MEMORY_KEY_PATTERN,
    WorkingMemoryEntry,
    WorkingMemorySet,
)
from kelpie.storage import Page

router = LettaRouter(prefix="/v1/agents/{agent_id}/working-memory", tags=["working-memory"])

KeyPage = Annotated[
    Page, Depends(page_params(100, order_default="asc", cursor="key", ordered_by="key"))
]
Key = Annotated[str, Path(description=f"The key: {WORKING_MEMORY_KEY_PATTERN}")]
Prefix = Annotated[str, Query(description="Only keys that start with this text")]


def _agent_id(agent_id: str) -> str:
    return checked_id(AGENT_PREFIX, agent_id, "agent_id")


@router.get("", response_model=list[WorkingMemoryEntry])
async def list_working_memory(
    agent_id: str, services: ServicesDep, page: KeyPage, prefix: Prefix = ""
) -> Response:
    """The agent's live (unexpired) keys in key order, with their values."""
    entries = await services.working_memory.list_entries(_agent_id(agent_id), prefix, page)
    return json_response(entries)


@router.get("/{key}", response_model=WorkingMemoryEntry)
async def get_working_memory(agent_id: str, key: Key, services: ServicesDep) -> Response:
    """One key; 404 if the key is unknown or expired."""
    return json_response(await services.working_memory.get(_agent_id(agent_id), key))


@router.put("/{key}", response_model=WorkingMemoryEntry)
async def set_working_memory(
    agent_id: str, key: Key, body: WorkingMemorySet, services: ServicesDep
) -> Response:
    """Sets the key: its value and TTL are replaced, its created_at kept."""
    return json_response(await services.working_memory.set(_agent_id(agent_id), key, body))


@router.delete("/{key}")
async def delete_working_memory(agent_id: str, key: Key, services: ServicesDep) -> None:
    """Deletes the key; 404 if it is unknown or expired."""
    await services.working_memory.delete(_agent_id(agent_id), key)

"""Standalone blocks: `/v1/blocks/…`, and their history (a Kelpie extension)."""

from typing import Annotated

from fastapi import Depends, Path, Query, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_params
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.schemas import (
    BLOCK_HISTORY_SEQ_MAX,
    BLOCK_PREFIX,
    AgentState,
    Block,
    BlockCreate,
    BlockHistoryEntry,
    BlockUpdate,
    BlockVersionSide,
)
from kelpie.storage import BlockQuery, Page

Page50 = Annotated[Page, Depends(page_params(50))]
SeqPage = Annotated[Page, Depends(page_params(50, cursor="seq", ordered_by="seq"))]
Seq = Annotated[
    int, Path(ge=1, le=BLOCK_HISTORY_SEQ_MAX, description="The entry's sequence number")
]
Side = Annotated[
    BlockVersionSide,
    Query(description="`new`: the block as the change left it; `old`: as it was before"),
]

router = LettaRouter(prefix="/v1/blocks", tags=["blocks"])


def _block_id(block_id: str) -> str:
    return checked_id(BLOCK_PREFIX, block_id, "block_id")


@router.post("", response_model=Block)
async def create_block(body: BlockCreate, services: ServicesDep) -> Response:
    return json_response(await services.blocks.create(body))


@router.get("", response_model=list[Block])
async def list_blocks(
    services: ServicesDep,
    page: Page50,
    label: str | None = None,
    label_search: str | None = None,
    value_search: str | None = None,
    description_search: str | None = None,
    tags: Annotated[list[str] | None, Query()] = None,
    match_all_tags: bool = False,
    templates_only: bool = False,
) -> Response:
    query = BlockQuery(
        label=label,
        label_search=label_search,
        value_search=value_search,
        description_search=description_search,
        tags=tuple(tags or ()),
        match_all_tags=match_all_tags,
        templates_only=templates_only,
    )
    return json_response(await services.blocks.list_blocks(query, page))


@router.get("/{block_id}", response_model=Block)
async def retrieve_block(block_id: str, services: ServicesDep) -> Response:
    return json_response(await services.blocks.retrieve(_block_id(block_id)))


@router.patch("/{block_id}", response_model=Block)
async def update_block(block_id: str, body: BlockUpdate, services: ServicesDep) -> Response:
    return json_response(await services.blocks.update(_block_id(block_id), body))


@router.delete("/{block_id}")
async def delete_block(block_id: str, services: ServicesDep) -> None:
    await services.blocks.delete(_block_id(block_id))


@router.get("/{block_id}/agents", response_model=list[AgentState])
async def list_block_agents(
    block_id: str,
    services: ServicesDep,
    page: Page50,
) -> Response:
    return json_response(await services.blocks.list_agents(_block_id(block_id), page))


@router.get("/{block_id}/history", response_model=list[BlockHistoryEntry])
async def list_block_history(block_id: str, services: ServicesDep, page: SeqPage) -> Response:
    """The block's changes, newest first by default (Kelpie extension)."""
    return json_response(await services.blocks.list_history(_block_id(block_id), page))


@router.get("/{block_id}/history/{seq}", response_model=BlockHistoryEntry)
async def retrieve_block_history_entry(block_id: str, seq: Seq, services: ServicesDep) -> Response:
    """One change to the block (Kelpie extension)."""
    return json_response(await services.blocks.history_entry(_block_id(block_id), seq))


@router.post("/{block_id}/history/{seq}/restore", response_model=Block)
async def restore_block_version(
    block_id: str, seq: Seq, services: ServicesDep, side: Side = "new"
) -> Response:
    """Restores the block's value, label, description and limit from one side of a
    history entry; the restore is recorded as a change of its own (Kelpie extension)."""
    return json_response(await services.blocks.restore(_block_id(block_id), seq, side))

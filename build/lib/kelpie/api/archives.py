"""Archival memory: `/v1/agents/{id}/archival-memory…`, `/v1/agents/{id}/archives/…`,
`/v1/archives/…` and `/v1/passages/search` (letta-api.md §1.8)."""

import datetime as dt
from typing import Annotated, Literal

from fastapi import Depends, Query, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_of, page_params
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.schemas import (
    AGENT_PREFIX,
    ARCHIVE_PREFIX,
    PASSAGE_PREFIX,
    SEARCH_QUERY_CHARS_MAX,
    SEARCH_RESULTS_MAX,
    ArchivalSearchResponse,
    Archive,
    ArchiveCreate,
    ArchiveUpdate,
    Passage,
    PassageBatchCreate,
    PassageCreate,
    PassageSearchHit,
    PassageSearchRequest,
    TagMatchMode,
)
from kelpie.storage import PAGE_LIMIT_MAX, ArchiveQuery, Page

Page50 = Annotated[Page, Depends(page_params(50))]
PASSAGE_LIST_LIMIT_DEFAULT = 100

router = LettaRouter(prefix="/v1/agents", tags=["archival memory"])
archives_router = LettaRouter(prefix="/v1/archives", tags=["archives"])
passages_router = LettaRouter(prefix="/v1/passages", tags=["archives"])


def _agent_id(agent_id: str) -> str:
    return checked_id(AGENT_PREFIX, agent_id, "agent_id")


def _archive_id(archive_id: str) -> str:
    return checked_id(ARCHIVE_PREFIX, archive_id, "archive_id")


def _passage_id(passage_id: str) -> str:
    return checked_id(PASSAGE_PREFIX, passage_id, "memory_id")


# An agent's archival memory -------------------------------------------------------------


@router.post("/{agent_id}/archival-memory", response_model=list[Passage])
async def create_agent_passage(
    agent_id: str, body: PassageCreate, services: ServicesDep
) -> Response:
    return json_response(await services.archives.insert_agent_passage(_agent_id(agent_id), body))


@router.get("/{agent_id}/archival-memory", response_model=list[Passage])
async def list_agent_passages(
    agent_id: str,
    services: ServicesDep,
    after: str | None = None,
    before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = PASSAGE_LIST_LIMIT_DEFAULT,
    search: str | None = None,
    ascending: bool = True,
) -> Response:
    # Letta lists archival memory oldest first unless asked otherwise.
    page = page_of(limit=limit, order="asc", after=after, before=before, ascending=ascending)
    passages = await services.archives.list_agent_passages(_agent_id(agent_id), page, search)
    return json_response(passages)


@router.get("/{agent_id}/archival-memory/search", response_model=ArchivalSearchResponse)
async def search_agent_passages(
    agent_id: str,
    services: ServicesDep,
    query: Annotated[str, Query(min_length=1, max_length=SEARCH_QUERY_CHARS_MAX)],
    tags: Annotated[list[str] | None, Query()] = None,
    tag_match_mode: TagMatchMode = "any",
    top_k: Annotated[int | None, Query(ge=1, le=SEARCH_RESULTS_MAX)] = None,
    start_datetime: dt.datetime | None = None,
    end_datetime: dt.datetime | None = None,
) -> Response:
    found = await services.archives.search_agent_passages(
        _agent_id(agent_id),
        query,
        tags=tags or [],
        match_all_tags=tag_match_mode == "all",
        top_k=top_k,
        start=start_datetime,
        end=end_datetime,
    )
    return json_response(found)


@router.delete("/{agent_id}/archival-memory/{memory_id}")
async def delete_agent_passage(agent_id: str, memory_id: str, services: ServicesDep) -> None:
    await services.archives.delete_agent_passage(_agent_id(agent_id), _passage_id(memory_id))


@router.patch("/{agent_id}/archives/attach/{archive_id}")
async def attach_archive(agent_id: str, archive_id: str, services: ServicesDep) -> None:
    await services.archives.attach(_agent_id(agent_id), _archive_id(archive_id))


@router.patch("/{agent_id}/archives/detach/{archive_id}")
async def detach_archive(agent_id: str, archive_id: str, services: ServicesDep) -> None:
    await services.archives.detach(_agent_id(agent_id), _archive_id(archive_id))


# Archives -------------------------------------------------------------------------------


@archives_router.post("", response_model=Archive)
async def create_archive(body: ArchiveCreate, services: ServicesDep) -> Response:
    return json_response(await services.archives.create(body))


@archives_router.get("", response_model=list[Archive])
async def list_archives(
    services: ServicesDep,
    page: Page50,
    name: str | None = None,
    agent_id: str | None = None,
    order_by: Literal["created_at"] = "created_at",
) -> Response:
    query = ArchiveQuery(name=name, agent_id=None if agent_id is None else _agent_id(agent_id))
    return json_response(await services.archives.list_archives(query, page))


@archives_router.get("/{archive_id}", response_model=Archive)
async def retrieve_archive(archive_id: str, services: ServicesDep) -> Response:
    return json_response(await services.archives.retrieve(_archive_id(archive_id)))


@archives_router.patch("/{archive_id}", response_model=Archive)
async def update_archive(archive_id: str, body: ArchiveUpdate, services: ServicesDep) -> Response:
    return json_response(await services.archives.update(_archive_id(archive_id), body))


@archives_router.delete("/{archive_id}", status_code=204)
async def delete_archive(archive_id: str, services: ServicesDep) -> Response:
    await services.archives.delete(_archive_id(archive_id))
    return Response(status_code=204)


@archives_router.post("/{archive_id}/passages", response_model=Passage)
async def create_archive_passage(
    archive_id: str, body: PassageCreate, services: ServicesDep
) -> Response:
    [passage] = await services.archives.insert_passages(_archive_id(archive_id), [body])
    return json_response(passage)


@archives_router.post("/{archive_id}/passages/batch", response_model=list[Passage])
async def create_archive_passages(
    archive_id: str, body: PassageBatchCreate, services: ServicesDep
) -> Response:
    passages = await services.archives.insert_passages(_archive_id(archive_id), body.passages)
    return json_response(passages)


@archives_router.delete("/{archive_id}/passages/{passage_id}", status_code=204)
async def delete_archive_passage(
    archive_id: str, passage_id: str, services: ServicesDep
) -> Response:
    passage_id = checked_id(PASSAGE_PREFIX, passage_id, "passage_id")
    await services.archives.delete_passage(_archive_id(archive_id), passage_id)
    return Response(status_code=204)


@passages_router.post("/search", response_model=list[PassageSearchHit])
async def search_passages(body: PassageSearchRequest, services: ServicesDep) -> Response:
    if body.agent_id is not None:
        _agent_id(body.agent_id)
    if body.archive_id is not None:
        _archive_id(body.archive_id)
    return json_response(await services.archives.search(body))

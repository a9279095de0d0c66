"""Runs and steps: `/v1/runs/…`, `/v1/steps/…`."""

from typing import Annotated

from fastapi import Body, Depends, Query, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_params
from kelpie.api._responses import EVENT_STREAM, raises
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.api._turns import follow_stream
from kelpie.errors import Expired, InvalidInput
from kelpie.schemas import RUN_PREFIX, STEP_PREFIX, LettaMessage, RetrieveStreamRequest, Run, Step
from kelpie.storage import Page, RunQuery

Page100 = Annotated[Page, Depends(page_params(100))]
Page50 = Annotated[Page, Depends(page_params(50))]

router = LettaRouter(prefix="/v1/runs", tags=["runs"])
steps_router = LettaRouter(prefix="/v1/steps", tags=["steps"])


@router.get("", response_model=list[Run])
async def list_runs(
    services: ServicesDep,
    page: Page100,
    agent_id: str | None = None,
    agent_ids: Annotated[list[str] | None, Query()] = None,
    conversation_id: str | None = None,
    statuses: Annotated[list[str] | None, Query()] = None,
    active: bool = False,
    background: bool | None = None,
) -> Response:
    ids = tuple([*([agent_id] if agent_id else []), *(agent_ids or [])])
    wanted = tuple(statuses or ())
    if active:
        wanted = ("created", "running")
    query = RunQuery(
        agent_ids=ids, conversation_id=conversation_id, statuses=wanted, background=background
    )
    return json_response(await services.messages.list_runs(query, page))


@router.get("/{run_id}", response_model=Run)
async def retrieve_run(run_id: str, services: ServicesDep) -> Response:
    run_id = checked_id(RUN_PREFIX, run_id, "run_id")
    return json_response(await services.messages.get_run(run_id))


@router.get("/{run_id}/messages", response_model=list[LettaMessage])
async def list_run_messages(run_id: str, services: ServicesDep, page: Page100) -> Response:
    run_id = checked_id(RUN_PREFIX, run_id, "run_id")
    return json_response(await services.messages.run_messages(run_id, page))


@router.post(
    "/{run_id}/stream",
    response_class=Response,
    responses={**EVENT_STREAM, **raises(Expired)},
)
async def stream_run(
    run_id: str,
    services: ServicesDep,
    body: Annotated[RetrieveStreamRequest | None, Body()] = None,
) -> Response:
    """Replays a background run's stored stream after `starting_after`, then follows it
    live until it ends."""
    run = await services.messages.get_run(checked_id(RUN_PREFIX, run_id, "run_id"))
    if not run.background:
        raise InvalidInput("Run was not created in background mode, so it cannot be retrieved.")
    return await follow_stream(services, run, body or RetrieveStreamRequest())


@router.get("/{run_id}/steps", response_model=list[Step])
async def list_run_steps(run_id: str, services: ServicesDep, page: Page50) -> Response:
    run_id = checked_id(RUN_PREFIX, run_id, "run_id")
    return json_response(await services.messages.list_steps(run_id, page))


@steps_router.get("/{step_id}", response_model=Step)
async def retrieve_step(step_id: str, services: ServicesDep) -> Response:
    step_id = checked_id(STEP_PREFIX, step_id, "step_id")
    return json_response(await services.messages.get_step(step_id))

"""Messages on an agent: send (JSON, SSE, async), list, cancel, reset."""

from typing import Annotated, Any

from fastapi import Body, Depends, Query, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_params
from kelpie.api._responses import EVENT_STREAM, raises
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.api._turns import send
from kelpie.errors import Conflict, Expired
from kelpie.schemas import (
    AGENT_PREFIX,
    AgentState,
    CompactionRequest,
    CompactionResponse,
    LettaMessage,
    LettaMessageType,
    LettaRequest,
    LettaResponse,
    MessageSearchRequest,
    Run,
)
from kelpie.service import thread_of
from kelpie.storage import Page

Page100 = Annotated[Page, Depends(page_params(100))]

router = LettaRouter(prefix="/v1/agents", tags=["messages"])
search_router = LettaRouter(prefix="/v1/messages", tags=["messages"])


def _agent_id(agent_id: str) -> str:
    return checked_id(AGENT_PREFIX, agent_id, "agent_id")


@router.post(
    "/{agent_id}/messages",
    response_model=LettaResponse,
    responses={**EVENT_STREAM, **raises(Expired)},
)
async def send_message(agent_id: str, body: LettaRequest, services: ServicesDep) -> Response:
    return await send(services, _agent_id(agent_id), None, body, stream=body.streaming)


@router.post(
    "/{agent_id}/messages/stream",
    response_class=Response,
    responses={**EVENT_STREAM, **raises(Expired)},
)
async def stream_message(agent_id: str, body: LettaRequest, services: ServicesDep) -> Response:
    return await send(services, _agent_id(agent_id), None, body, stream=True)


@router.post("/{agent_id}/messages/async", response_model=Run)
async def send_message_async(agent_id: str, body: LettaRequest, services: ServicesDep) -> Response:
    agent_id = _agent_id(agent_id)
    run = services.messages.new_run(agent_id, None, body, background=True)
    await services.messages.queue_turn(body, run)
    return json_response(run)


@router.post("/{agent_id}/messages/cancel")
async def cancel_messages(
    agent_id: str,
    services: ServicesDep,
    run_ids: Annotated[list[str] | None, Body(embed=True)] = None,
) -> dict[str, str]:
    agent_id = _agent_id(agent_id)
    cancelled = services.messages.cancel(agent_id, run_ids)
    if not cancelled:
        raise Conflict(f"No active runs to cancel for agent {agent_id}")
    return cancelled


@router.get("/{agent_id}/messages", response_model=list[LettaMessage])
async def list_messages(
    agent_id: str,
    services: ServicesDep,
    page: Page100,
    conversation_id: str | None = None,
    include_return_message_types: Annotated[list[LettaMessageType] | None, Query()] = None,
    use_assistant_message: bool = True,
) -> Response:
    """Every thread's messages, or one thread's: `default` (or the agent's id) for the
    agent's own, a conversation id for that conversation."""
    agent_id = _agent_id(agent_id)
    conversation = None
    if conversation_id is not None:
        _, conversation = thread_of(conversation_id, agent_id)
    items = await services.messages.list_messages(
        agent_id,
        conversation,
        page,
        include_return_message_types,
        use_assistant_message,
        all_threads=conversation_id is None,
    )
    return json_response(items)


@router.post("/{agent_id}/summarize", response_model=CompactionResponse)
async def summarize_messages(
    agent_id: str,
    services: ServicesDep,
    body: Annotated[CompactionRequest | None, Body()] = None,
) -> Response:
    """Compacts the agent's own thread: its older messages become one summary."""
    settings = None if body is None else body.compaction_settings
    return json_response(await services.messages.compact(_agent_id(agent_id), None, settings))


@router.patch("/{agent_id}/reset-messages", response_model=AgentState)
async def reset_messages(agent_id: str, services: ServicesDep) -> Response:
    return json_response(await services.messages.reset(_agent_id(agent_id)))


@router.get("/{agent_id}/context")
async def agent_context(agent_id: str, services: ServicesDep) -> dict[str, Any]:
    return await services.context.overview(_agent_id(agent_id))


@search_router.post("/search")
async def search_messages(body: MessageSearchRequest, services: ServicesDep) -> list[Any]:
    """Hybrid search over what users and agents said (one agent's, or everyone's)."""
    if body.agent_id is not None:
        _agent_id(body.agent_id)
    return await services.recall.search(body)

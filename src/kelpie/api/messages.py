"""Messages on an agent: send (JSON, SSE, async), list, cancel, reset."""

import asyncio
from typing import Annotated, Any

from fastapi import Body, Depends, Query, Response
from sse_starlette import EventSourceResponse

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_params
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.api._streams import turn_events
from kelpie.errors import Conflict, ValidationFailed
from kelpie.schemas import (
    AGENT_PREFIX,
    AgentState,
    LettaMessage,
    LettaMessageType,
    LettaRequest,
    LettaResponse,
    MessageSearchRequest,
    Run,
)
from kelpie.storage import Page

Page100 = Annotated[Page, Depends(page_params(100))]

router = LettaRouter(prefix="/v1/agents", tags=["messages"])
search_router = LettaRouter(prefix="/v1/messages", tags=["messages"])


def _agent_id(agent_id: str) -> str:
    return checked_id(AGENT_PREFIX, agent_id, "agent_id")


def _conversation(conversation_id: str | None) -> str | None:
    """The agent's default thread is stored without a conversation id."""
    if conversation_id in (None, "", "default") or (conversation_id or "").startswith("agent-"):
        return None
    return conversation_id


def _check_json_flags(request: LettaRequest) -> None:
    sent = request.model_fields_set
    for flag in ("stream_tokens", "background"):
        if getattr(request, flag):
            raise ValidationFailed(f"{flag}=true requires streaming=true")
    if "include_pings" in sent and not request.include_pings:
        raise ValidationFailed("include_pings=false requires streaming=true")


async def _send(
    agent_id: str, request: LettaRequest, services: Any, *, stream: bool, conversation: str | None
) -> Response:
    messages = services.messages
    run = messages.new_run(agent_id, conversation, request, background=request.background)
    if not stream:
        _check_json_flags(request)
        started = await messages.start_turn(agent_id, request, run)
        result = await started.run()
        return json_response(messages.response(started.agent, request, result))
    queue: asyncio.Queue[Any] = asyncio.Queue()
    started = await messages.start_turn(agent_id, request, run, emit=queue.put)
    events = turn_events(messages.env, started, queue, include_pings=request.include_pings)
    return EventSourceResponse(events, sep="\n")


@router.post("/{agent_id}/messages", response_model=LettaResponse)
async def send_message(agent_id: str, body: LettaRequest, services: ServicesDep) -> Response:
    return await _send(
        _agent_id(agent_id), body, services, stream=body.streaming, conversation=None
    )


@router.post("/{agent_id}/messages/stream")
async def stream_message(agent_id: str, body: LettaRequest, services: ServicesDep) -> Response:
    return await _send(_agent_id(agent_id), body, services, stream=True, conversation=None)


@router.post("/{agent_id}/messages/async", response_model=Run)
async def send_message_async(agent_id: str, body: LettaRequest, services: ServicesDep) -> Response:
    agent_id = _agent_id(agent_id)
    run = services.messages.new_run(agent_id, None, body, background=True)
    await services.messages.queue_turn(agent_id, body, run)
    return json_response(run)


@router.post("/{agent_id}/messages/cancel")
async def cancel_messages(
    agent_id: str,
    services: ServicesDep,
    run_ids: Annotated[list[str] | None, Body(embed=True)] = None,
) -> dict[str, str]:
    cancelled = services.messages.cancel(_agent_id(agent_id), run_ids)
    if not cancelled:
        raise Conflict("No active runs to cancel")
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
    items = await services.messages.list_messages(
        _agent_id(agent_id),
        _conversation(conversation_id),
        page,
        include_return_message_types,
        use_assistant_message,
    )
    return json_response(items)


@router.patch("/{agent_id}/reset-messages", response_model=AgentState)
async def reset_messages(agent_id: str, services: ServicesDep) -> Response:
    return json_response(await services.messages.reset(_agent_id(agent_id)))


@router.get("/{agent_id}/context")
async def agent_context(agent_id: str, services: ServicesDep) -> dict[str, Any]:
    return await services.messages.context(_agent_id(agent_id))


@search_router.post("/search")
async def search_messages(body: MessageSearchRequest, services: ServicesDep) -> list[Any]:
    """Hybrid search over what users and agents said (one agent's, or everyone's)."""
    if body.agent_id is not None:
        _agent_id(body.agent_id)
    return await services.recall.search(body)

"""Conversations: `/v1/conversations/…` (letta-api.md §1.5). A conversation path id is a
`conv-…` id, `default` with the agent's id beside it, or the agent's id itself."""

from typing import Annotated, Literal

from fastapi import Body, Depends, Query, Response

from kelpie.api._deps import Services, ServicesDep
from kelpie.api._params import page_params
from kelpie.api._responses import EVENT_STREAM, raises
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.api._turns import follow_stream, send
from kelpie.errors import Conflict, Expired, InvalidInput, NotFound
from kelpie.schemas import (
    AGENT_PREFIX,
    CONVERSATION_PREFIX,
    CompactionRequest,
    CompactionResponse,
    Conversation,
    ConversationCreate,
    ConversationMessageRequest,
    ConversationUpdate,
    LettaMessage,
    LettaMessageType,
    LettaResponse,
    RetrieveStreamRequest,
    Run,
)
from kelpie.storage import ConversationQuery, Page

Page50 = Annotated[Page, Depends(page_params(50))]
Page100 = Annotated[Page, Depends(page_params(100))]

router = LettaRouter(prefix="/v1/conversations", tags=["conversations"])


def _conversation_id(conversation_id: str) -> str:
    return checked_id(CONVERSATION_PREFIX, conversation_id, "conversation_id")


def _agent_id(agent_id: str | None) -> str | None:
    return None if agent_id is None else checked_id(AGENT_PREFIX, agent_id, "agent_id")


@router.post("", response_model=Conversation)
async def create_conversation(
    agent_id: str,
    services: ServicesDep,
    body: Annotated[ConversationCreate | None, Body()] = None,
) -> Response:
    agent = checked_id(AGENT_PREFIX, agent_id, "agent_id")
    created = await services.conversations.create(agent, body or ConversationCreate())
    return json_response(created)


@router.get("", response_model=list[Conversation])
async def list_conversations(
    services: ServicesDep,
    page: Page50,
    agent_id: str | None = None,
    archive_status: Literal["unarchived", "archived", "all"] = "unarchived",
    order_by: Literal["created_at", "last_run_completion", "last_message_at"] = "created_at",
    summary_search: str | None = None,
) -> Response:
    archived = {"unarchived": False, "archived": True, "all": None}[archive_status]
    # Runs complete as messages arrive: both orders follow the last message.
    column = "created_at" if order_by == "created_at" else "last_message_at"
    query = ConversationQuery(
        agent_id=_agent_id(agent_id),
        archived=archived,
        summary_search=summary_search,
        order_by=column,
    )
    return json_response(await services.conversations.list(query, page))


@router.get("/{conversation_id}", response_model=Conversation)
async def retrieve_conversation(conversation_id: str, services: ServicesDep) -> Response:
    return json_response(await services.conversations.get(_conversation_id(conversation_id)))


@router.patch("/{conversation_id}", response_model=Conversation)
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, services: ServicesDep
) -> Response:
    updated = await services.conversations.update(_conversation_id(conversation_id), body)
    return json_response(updated)


@router.delete("/{conversation_id}")
async def delete_conversation(conversation_id: str, services: ServicesDep) -> None:
    await services.conversations.delete(_conversation_id(conversation_id))


@router.post("/{conversation_id}/fork", response_model=Conversation)
async def fork_conversation(
    conversation_id: str,
    services: ServicesDep,
    agent_id: str | None = None,
    hidden: bool = False,
    message_id: str | None = None,
) -> Response:
    forked = await services.conversations.fork(
        conversation_id, agent_id, hidden=hidden, message_id=message_id
    )
    return json_response(forked)


@router.post(
    "/{conversation_id}/messages",
    response_model=LettaResponse,
    responses={**EVENT_STREAM, **raises(Expired)},
)
async def send_conversation_message(
    conversation_id: str, body: ConversationMessageRequest, services: ServicesDep
) -> Response:
    agent_id, thread = await services.conversations.resolve(conversation_id, body.agent_id)
    if thread is not None:
        await services.conversations.touch(thread)
    return await send(services, agent_id, thread, body, stream=body.streaming)


@router.get("/{conversation_id}/messages", response_model=list[LettaMessage])
async def list_conversation_messages(
    conversation_id: str,
    services: ServicesDep,
    page: Page100,
    agent_id: str | None = None,
    include_return_message_types: Annotated[list[LettaMessageType] | None, Query()] = None,
    use_assistant_message: bool = True,
) -> Response:
    agent, thread = await services.conversations.resolve(conversation_id, agent_id)
    items = await services.messages.list_messages(
        agent, thread, page, include_return_message_types, use_assistant_message
    )
    return json_response(items)


@router.post("/{conversation_id}/cancel")
async def cancel_conversation(
    conversation_id: str, services: ServicesDep, agent_id: str | None = None
) -> dict[str, str]:
    agent, thread = await services.conversations.resolve(conversation_id, agent_id)
    cancelled = services.messages.cancel_thread(agent, thread)
    if not cancelled:
        raise Conflict(f"No active runs to cancel for conversation {conversation_id}")
    return cancelled


@router.post("/{conversation_id}/recompile", response_model=str)
async def recompile_conversation(
    conversation_id: str,
    services: ServicesDep,
    dry_run: bool = False,
    body: Annotated[CompactionRequest | None, Body()] = None,
) -> str:
    agent_id = None if body is None else body.agent_id
    return await services.conversations.recompile(conversation_id, agent_id, dry_run=dry_run)


@router.post("/{conversation_id}/compact", response_model=CompactionResponse)
async def compact_conversation(
    conversation_id: str,
    services: ServicesDep,
    body: Annotated[CompactionRequest | None, Body()] = None,
) -> Response:
    request = body or CompactionRequest()
    agent, thread = await services.conversations.resolve(conversation_id, request.agent_id)
    result = await services.messages.compact(agent, thread, request.compaction_settings)
    return json_response(result)


@router.post(
    "/{conversation_id}/stream",
    response_class=Response,
    responses={**EVENT_STREAM, **raises(Expired)},
)
async def retrieve_conversation_stream(
    conversation_id: str,
    services: ServicesDep,
    body: Annotated[RetrieveStreamRequest | None, Body()] = None,
) -> Response:
    """Reattaches to the thread's background run (or the one named by `run_id` or by an
    `otid` of its request), from after `starting_after`."""
    request = body or RetrieveStreamRequest()
    run = await _run_to_follow(services, conversation_id, request)
    return await follow_stream(services, run, request)


async def _run_to_follow(
    services: Services, conversation_id: str, request: RetrieveStreamRequest
) -> Run:
    messages = services.messages
    if request.run_id is not None:
        return await messages.get_run(request.run_id)
    agent_id, thread = await services.conversations.resolve(conversation_id, request.agent_id)
    if request.otid is not None:
        found = await messages.run_of_otid(agent_id, request.otid)
        if found is None:
            raise NotFound(
                f"No run found for otid={request.otid}. The run may have expired or never existed."
            )
        return found
    active = await messages.active_run(agent_id, thread)
    if active is None:
        raise InvalidInput("No active runs found for this conversation.")
    if not active.background:
        raise InvalidInput("Run was not created in background mode, so it cannot be retrieved.")
    return active

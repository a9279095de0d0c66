"""Messages by id and across agents: `/v1/messages/…`. letta-code retrieves in-context
messages by id (the system message among them) to check for pending approvals."""

from typing import Annotated

from fastapi import Depends, Query, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._params import page_params
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.errors import InvalidInput
from kelpie.schemas import MESSAGE_PREFIX, LettaMessage, LettaMessageType
from kelpie.storage import Page

Page100 = Annotated[Page, Depends(page_params(100))]

router = LettaRouter(prefix="/v1/messages", tags=["messages"])


@router.get("", response_model=list[LettaMessage])
async def list_all_messages(
    services: ServicesDep,
    page: Page100,
    conversation_id: str | None = None,
    include_return_message_types: Annotated[list[LettaMessageType] | None, Query()] = None,
) -> Response:
    """Every agent's messages, newest first by default; `limit` counts stored messages."""
    if conversation_id == "default" or (conversation_id or "").startswith("agent-"):
        raise InvalidInput(
            f"conversation_id={conversation_id} names an agent's default thread;"
            " list it with GET /v1/agents/{agent_id}/messages"
        )
    items = await services.message_lookup.list_messages(
        conversation_id, page, include_return_message_types
    )
    return json_response(items)


@router.get("/{message_id}", response_model=list[LettaMessage])
async def retrieve_message(message_id: str, services: ServicesDep) -> Response:
    """The items one stored message shows as (Letta answers a list)."""
    message_id = checked_id(MESSAGE_PREFIX, message_id, "message_id")
    return json_response(await services.message_lookup.retrieve(message_id))

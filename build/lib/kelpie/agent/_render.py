"""Stored messages as clients read them: one stored message expands to one or more
LettaMessage items sharing its id, each with an otid derived from the id and its index."""

import json
import uuid
from collections.abc import Collection, Sequence
from typing import Any, Final

from kelpie.schemas import LettaMessage, Message, ToolCallOut

SEND_MESSAGE_TOOL: Final = "send_message"
_OTID_INDEX_BITS: Final = 7


def item_otid(message_id: str, index: int) -> str:
    """Letta's rule: the message's uuid with its low 7 bits replaced by the item index."""
    assert 0 <= index < 2**_OTID_INDEX_BITS, "too many items in one message"
    raw = uuid.UUID(message_id.split("-", 1)[1]).int
    return str(uuid.UUID(int=(raw >> _OTID_INDEX_BITS << _OTID_INDEX_BITS) | index))


def _send_message_text(arguments: str, kwarg: str) -> str | None:
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return None
    value = parsed.get(kwarg) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


def expand(
    message: Message,
    *,
    text_is_assistant: bool,
    use_assistant_message: bool = True,
    assistant_tool: str = SEND_MESSAGE_TOOL,
    assistant_kwarg: str = "message",
) -> list[LettaMessage]:
    """The items one stored message shows as. `text_is_assistant`: assistant text is the
    reply (letta_v1) rather than inner thoughts (memgpt agents)."""
    if message.hidden:
        return []
    common: dict[str, Any] = {
        "id": message.id,
        "date": message.created_at,
        "run_id": message.run_id,
        "step_id": message.step_id,
        "sender_id": message.sender_id,
        "name": message.name,
    }
    if message.role == "system":
        return [LettaMessage(**common, message_type="system_message", content=message.text or "")]
    if message.role == "user":
        content = message.content_parts if message.content_parts else (message.text or "")
        return [
            LettaMessage(**common, message_type="user_message", content=content, otid=message.otid)
        ]
    if message.role == "approval":
        return [
            LettaMessage(
                **common,
                message_type="approval_response_message",
                otid=message.otid,
                approvals=message.approvals,
                approve=message.approve,
                approval_request_id=message.approval_request_id,
                reason=message.reason,
            )
        ]
    if message.role == "summary":
        return [
            LettaMessage(
                **common,
                message_type="summary_message",
                otid=item_otid(message.id, 0),
                summary=message.summary or message.text or "",
            )
        ]
    if message.role == "tool":
        return [
            LettaMessage(
                **common,
                message_type="tool_return_message",
                otid=item_otid(message.id, 0),
                tool_return=message.tool_return or "",
                status=message.tool_status or "success",
                tool_call_id=message.tool_call_id or "",
                stdout=message.stdout,
                stderr=message.stderr,
            )
        ]
    items: list[LettaMessage] = []

    def add(**fields: Any) -> None:
        items.append(LettaMessage(**common, otid=item_otid(message.id, len(items)), **fields))

    if message.reasoning:
        add(message_type="reasoning_message", reasoning=message.reasoning, source="reasoner_model")
    if message.text:
        if text_is_assistant:
            add(message_type="assistant_message", content=message.text)
        else:
            add(
                message_type="reasoning_message",
                reasoning=message.text,
                source="non_reasoner_model",
            )
    pending = [
        ToolCallOut(name=c.name, arguments=c.arguments, tool_call_id=c.id)
        for c in message.tool_calls
        if message.needs_client(c.id)
    ]
    for call in message.tool_calls:
        if message.needs_client(call.id):
            out = ToolCallOut(name=call.name, arguments=call.arguments, tool_call_id=call.id)
            add(message_type="approval_request_message", tool_call=out, tool_calls=pending)
            continue
        reply = None
        if use_assistant_message and call.name == assistant_tool:
            reply = _send_message_text(call.arguments, assistant_kwarg)
        if reply is not None:
            add(message_type="assistant_message", content=reply)
        else:
            tool_call = ToolCallOut(name=call.name, arguments=call.arguments, tool_call_id=call.id)
            add(message_type="tool_call_message", tool_call=tool_call, tool_calls=[tool_call])
    return items


def expand_all(
    messages: Sequence[Message],
    *,
    text_is_assistant: bool,
    include_types: Collection[str] | None = None,
    use_assistant_message: bool = True,
) -> list[LettaMessage]:
    items = [
        item
        for message in messages
        for item in expand(
            message,
            text_is_assistant=text_is_assistant,
            use_assistant_message=use_assistant_message,
        )
    ]
    if include_types is not None:
        items = [item for item in items if item.message_type in include_types]
    return items

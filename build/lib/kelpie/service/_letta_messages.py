"""Stored messages in Letta's own message shape (content parts, OpenAI-style tool calls,
tool returns), and back. Agent files carry messages this way, and `/context` shows them
this way (letta-code reads their `content`).

Kelpie keeps one tool message per tool return; Letta may pack several returns into one
message, which comes back here as several messages.
"""

import json
from collections.abc import Sequence
from typing import Any, Final

from kelpie.schemas import (
    AgentFileMessage,
    AgentFileToolCall,
    AgentFileToolCallFunction,
    AgentFileToolReturn,
    Message,
    StoredToolCall,
)

# How Letta (and Kelpie) open a message the model sees and the user does not: heartbeats,
# nudges. Imported user messages that start so stay hidden.
HIDDEN_MESSAGE_PREFIX: Final = "[This is an automated system message hidden from the user]"
# Letta's roles for messages Kelpie shows as user text.
_USER_ROLES: Final = frozenset({"user", "summary"})


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text, "signature": None}


def _letta_content(message: Message) -> list[dict[str, Any]]:
    if message.role == "user" and message.content_parts:
        return [
            _text_part(part["text"]) if part.get("type") == "text" else dict(part)
            for part in message.content_parts
        ]
    parts = []
    if message.reasoning:
        parts.append(
            {
                "type": "reasoning",
                "is_native": True,
                "reasoning": message.reasoning,
                "signature": None,
            }
        )
    if message.text:
        parts.append(_text_part(message.text))
    return parts


def to_letta_message(message: Message, *, message_id: str, agent_id: str) -> AgentFileMessage:
    """`message` as Letta stores it, under the ids given (file ids on export)."""
    calls = None
    if message.tool_calls:
        calls = [
            AgentFileToolCall(
                id=call.id,
                function=AgentFileToolCallFunction(name=call.name, arguments=call.arguments),
            )
            for call in message.tool_calls
        ]
    returns = []
    if message.role == "tool":
        returns.append(
            AgentFileToolReturn(
                tool_call_id=message.tool_call_id,
                status=message.tool_status or "success",
                stdout=message.stdout,
                stderr=message.stderr,
                func_response=message.text,
            )
        )
    # Letta keeps a tool call that waits for approval on a message of role "approval".
    role = "approval" if message.approval_request else message.role
    return AgentFileMessage(
        id=message_id,
        agent_id=agent_id,
        role=role,
        content=_letta_content(message),
        name=message.tool_name if message.role == "tool" else message.name,
        otid=message.otid,
        sender_id=message.sender_id,
        tool_calls=calls,
        tool_call_id=message.tool_call_id,
        tool_returns=returns,
        created_at=message.created_at,
    )


def _texts(content: str | list[dict[str, Any]], kind: str, key: str) -> list[str]:
    if isinstance(content, str):
        return [content] if kind == "text" else []
    return [
        part[key] for part in content if part.get("type") == kind and isinstance(part.get(key), str)
    ]


def _user_fields(message: AgentFileMessage) -> dict[str, Any]:
    content = message.content
    text = "\n".join(_texts(content, "text", "text"))
    parts = None
    if isinstance(content, list) and (
        len(content) > 1 or any(part.get("type") != "text" for part in content)
    ):
        parts = [
            {"type": "text", "text": part.get("text", "")} if part.get("type") == "text" else part
            for part in content
        ]
    return {
        "role": "user",
        "text": text,
        "content_parts": parts,
        "hidden": text.startswith(HIDDEN_MESSAGE_PREFIX),
    }


def _tool_calls(message: AgentFileMessage) -> list[StoredToolCall]:
    calls = [
        StoredToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
        for call in message.tool_calls or []
    ]
    if isinstance(message.content, list):
        # Newer Letta versions may keep calls as content parts instead.
        known = {call.id for call in calls}
        for part in message.content:
            if part.get("type") == "tool_call" and part.get("id") not in known:
                arguments = json.dumps(part.get("input") or {}, ensure_ascii=False)
                calls.append(
                    StoredToolCall(
                        id=str(part["id"]), name=str(part.get("name")), arguments=arguments
                    )
                )
    return calls


def _assistant_fields(message: AgentFileMessage) -> dict[str, Any]:
    reasoning = "\n\n".join(_texts(message.content, "reasoning", "reasoning"))
    text = "\n\n".join(_texts(message.content, "text", "text"))
    return {
        "role": "assistant",
        "text": text or None,
        "reasoning": reasoning or None,
        "tool_calls": _tool_calls(message),
        "approval_request": message.role == "approval",
    }


def unpacked_return(packaged: str) -> str:
    """The tool's own return inside Letta's `{"status", "message", "time"}` package."""
    try:
        parsed = json.loads(packaged)
    except ValueError:
        return packaged
    if not isinstance(parsed, dict) or "message" not in parsed:
        return packaged
    value = parsed["message"]
    if value is None:
        return "None"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _response_text(response: str | list[dict[str, Any]] | None) -> str | None:
    if response is None or isinstance(response, str):
        return response
    return "\n".join(_texts(response, "text", "text"))


def _tool_fields(message: AgentFileMessage) -> list[dict[str, Any]]:
    content_text = "\n".join(_texts(message.content, "text", "text"))
    returns = message.tool_returns or [AgentFileToolReturn(tool_call_id=message.tool_call_id)]
    fields = []
    for returned in returns:
        packaged = _response_text(returned.func_response)
        if packaged is None:
            packaged = content_text
        fields.append(
            {
                "role": "tool",
                "text": packaged,
                "tool_call_id": returned.tool_call_id or message.tool_call_id,
                "tool_name": message.name,
                "tool_return": unpacked_return(packaged),
                "tool_status": returned.status,
                "stdout": returned.stdout,
                "stderr": returned.stderr,
            }
        )
    return fields


def from_letta_message(message: AgentFileMessage) -> list[dict[str, Any]]:
    """The stored-message fields (no id, agent or time) of one Letta message: usually one
    message, several for a tool message with several returns, none for an approval
    response (Kelpie has no such message yet; the tool results that follow it carry
    what the model needs)."""
    common = {"otid": message.otid, "sender_id": message.sender_id}
    fields: list[dict[str, Any]]
    if message.role == "system":
        fields = [{"role": "system", "text": "\n".join(_texts(message.content, "text", "text"))}]
    elif message.role in _USER_ROLES:
        fields = [{**_user_fields(message), "name": message.name}]
    elif message.role in ("tool", "function"):
        fields = _tool_fields(message)
    elif message.role == "approval" and not message.tool_calls:
        fields = []
    else:
        fields = [{**_assistant_fields(message), "name": message.name}]
    return [{**common, **item} for item in fields]


def letta_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as `/context` shows them: Letta's shape under their own ids."""
    return [
        {
            **to_letta_message(m, message_id=m.id, agent_id=m.agent_id).model_dump(mode="json"),
            "conversation_id": m.conversation_id,
            "run_id": m.run_id,
            "step_id": m.step_id,
        }
        for m in messages
    ]

"""Message threads and what a send puts into one.

A thread is the agent's own (its in-context ids kept on the agent, conversation id None)
or one conversation's. A send brings user messages, or a reply to the thread's pending
approval request (client tool results, approve/deny decisions), possibly followed by
user messages. Every refusal here is Letta's, word for word where letta-code matches it.
"""

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kelpie.agent import ApprovalReply
from kelpie.errors import Conflict, InvalidInput, ValidationFailed
from kelpie.schemas import (
    AgentState,
    ApprovalCreate,
    ApprovalDecision,
    Conversation,
    LettaRequest,
    Message,
    MessageCreate,
    TextContent,
    ToolResult,
    ToolReturnCreate,
)

REQUEST_TOKEN_CHARS: Final = 16
NO_PENDING_APPROVAL: Final = (
    "Cannot process approval response: No tool call is currently awaiting approval."
    " Please send a regular message to interact with the agent."
)


class AwaitingApproval(Conflict):
    """Letta's 409 while a tool call waits for approval; letta-code matches the wording."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "Cannot send a new message: The agent is waiting for approval on a tool call."
            " Please approve or deny the pending request before continuing."
        )
        self.pending_request_id = request_id


@dataclasses.dataclass(frozen=True)
class Thread:
    agent: AgentState
    conversation: Conversation | None
    # The agent's secrets, kept apart from `agent` so that nothing rendering the agent
    # can show them: the environment of its sandboxed tools.
    secrets: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def conversation_id(self) -> str | None:
        return None if self.conversation is None else self.conversation.id

    @property
    def context_ids(self) -> list[str]:
        if self.conversation is not None:
            return list(self.conversation.in_context_message_ids)
        return list(self.agent.message_ids)


@dataclasses.dataclass(frozen=True)
class SendInput:
    """What a send adds: user messages (as Message fields), and the approval reply first
    when the send answers a pending request."""

    user: list[dict[str, Any]]
    approval: ApprovalCreate | None


def _text_of(content: str | list[Any]) -> tuple[str, list[dict[str, Any]] | None]:
    if isinstance(content, str):
        return content, None
    parts: list[dict[str, Any]] = [part.model_dump() for part in content]
    text = "\n".join(part.text for part in content if isinstance(part, TextContent))
    return text, parts


def _user_fields(message: MessageCreate) -> dict[str, Any]:
    text, parts = _text_of(message.content)
    return {
        "role": message.role,
        "text": text,
        "content_parts": parts,
        "otid": message.otid,
        "sender_id": message.sender_id,
        "name": message.name,
    }


def read_input(request: LettaRequest) -> SendInput:
    """The request's new messages, checked by Letta's rules."""
    if request.messages is not None and request.input is not None:
        raise ValidationFailed("Provide either messages or input, not both")
    if request.input is not None:
        return SendInput([_user_fields(MessageCreate(role="user", content=request.input))], None)
    if request.messages is None:
        raise ValidationFailed("Either messages or input must be provided")
    if not request.messages:
        raise ValidationFailed("Messages must not be empty")
    first, rest = request.messages[0], request.messages[1:]
    approval: ApprovalCreate | None = None
    if isinstance(first, ToolReturnCreate):
        approval = ApprovalCreate(type="approval", approvals=list(first.tool_returns))
        approval = approval.model_copy(update={"otid": first.otid})
    elif isinstance(first, ApprovalCreate):
        approval = first
    else:
        rest = request.messages
    user = []
    for message in rest:
        if not isinstance(message, MessageCreate):
            raise InvalidInput(
                "An approval reply must come first in a request, and only once"
                f" (found a '{message.type}' message after it)"
            )
        user.append(_user_fields(message))
    return SendInput(user, approval)


def request_token(request: LettaRequest) -> str | None:
    """A digest of every otid in the request, as Letta derives it; None without otids."""
    otids = [m.otid for m in request.messages or [] if m.otid]
    if not otids:
        return None
    return hashlib.sha256("|".join(otids).encode()).hexdigest()[:REQUEST_TOKEN_CHARS]


def pending_request(last: Message | None) -> Message | None:
    return last if last is not None and last.approval_request else None


def check_reply(pending: Message | None, sent: SendInput) -> ApprovalReply | None:
    """The reply checked against the pending request; a plain send while one is pending
    is refused, as is a reply with nothing pending or with the wrong tool call ids."""
    if sent.approval is None:
        if pending is not None:
            raise AwaitingApproval(pending.id)
        return None
    if pending is None:
        raise InvalidInput(NO_PENDING_APPROVAL)
    expected = [c.id for c in pending.tool_calls if pending.needs_client(c.id)]
    approvals = _approvals(sent.approval, pending, expected)
    received = [a.tool_call_id for a in approvals]
    if set(received) != set(expected) or len(received) != len(set(received)):
        raise InvalidInput(
            f"Invalid tool call IDs. Expected '{expected}', but received '{received}'."
        )
    approval = sent.approval
    return ApprovalReply(
        request=pending,
        decisions={a.tool_call_id: a for a in approvals if isinstance(a, ApprovalDecision)},
        results={a.tool_call_id: a for a in approvals if isinstance(a, ToolResult)},
        message={
            "approvals": [a.model_dump(mode="json", exclude_none=True) for a in approvals],
            "approve": approval.approve,
            "approval_request_id": approval.approval_request_id or pending.id,
            "reason": approval.reason,
            "otid": approval.otid,
        },
    )


def _approvals(
    approval: ApprovalCreate, pending: Message, expected: Sequence[str]
) -> list[ApprovalDecision | ToolResult]:
    if approval.approvals is not None:
        return list(approval.approvals)
    if approval.approve is None:
        raise InvalidInput("An approval reply needs `approvals`, or `approve` for the request")
    if approval.approval_request_id not in (None, pending.id):
        raise InvalidInput(
            f"Invalid approval request id. Expected '{pending.id}',"
            f" but received '{approval.approval_request_id}'."
        )
    # The legacy form decides every pending call at once.
    return [
        ApprovalDecision(tool_call_id=call_id, approve=approval.approve, reason=approval.reason)
        for call_id in expected
    ]

"""Messages: what clients send (LettaRequest), what is stored (Message), and what clients
read back (the LettaMessage union, one stored message expanding to one or more items)."""

import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from kelpie.schemas._base import RequestModel, ResponseModel

MESSAGE_TEXT_CHARS_MAX: Final = 1_000_000
REQUEST_MESSAGES_MAX: Final = 100
MAX_STEPS_DEFAULT: Final = 50
MAX_STEPS_LIMIT: Final = 1_000
APPROVAL_REASON_CHARS_MAX: Final = 10_000
# A resumed stream replays at most this many stored events per read.
STREAM_BATCH_SIZE_MAX: Final = 1_000

# `approval`: a client's reply to an approval request; `summary`: what compaction left of
# older messages (sent to the model as a user message).
MessageRole = Literal["system", "user", "assistant", "tool", "approval", "summary"]
StopReason = Literal[
    "end_turn",
    "error",
    "llm_api_error",
    "invalid_llm_response",
    "invalid_tool_call",
    "max_steps",
    "max_tokens_exceeded",
    "no_tool_call",
    "tool_rule",
    "cancelled",
    "insufficient_credits",
    "requires_approval",
    "context_window_overflow_in_system_prompt",
]
LettaMessageType = Literal[
    "system_message",
    "user_message",
    "assistant_message",
    "reasoning_message",
    "hidden_reasoning_message",
    "tool_call_message",
    "tool_return_message",
    "approval_request_message",
    "approval_response_message",
    "summary_message",
    "event_message",
]
RunStatus = Literal["created", "running", "completed", "failed", "cancelled"]


# Requests -----------------------------------------------------------------------------


class TextContent(RequestModel):
    type: Literal["text"] = "text"
    text: str = Field(max_length=MESSAGE_TEXT_CHARS_MAX)


class ImageContent(RequestModel):
    type: Literal["image"]
    source: dict[str, Any]


ContentPart = Annotated[TextContent | ImageContent, Field(discriminator="type")]


class MessageCreate(RequestModel):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "assistant"] = "user"
    content: str | list[ContentPart] = Field(max_length=MESSAGE_TEXT_CHARS_MAX)
    name: str | None = None
    otid: str | None = None
    sender_id: str | None = None
    group_id: str | None = None
    batch_item_id: str | None = None


class ApprovalDecision(RequestModel):
    """Approve or deny one pending tool call; the server runs it when approved."""

    type: Literal["approval"] = "approval"
    tool_call_id: str = Field(min_length=1)
    approve: bool
    reason: str | None = Field(default=None, max_length=APPROVAL_REASON_CHARS_MAX)


class ToolResult(RequestModel):
    """The result of a tool the client ran itself."""

    type: Literal["tool"] = "tool"
    tool_call_id: str = Field(min_length=1)
    tool_return: str | list[ContentPart] = Field(max_length=MESSAGE_TEXT_CHARS_MAX)
    status: Literal["success", "error"] = "success"
    stdout: list[str] | None = None
    stderr: list[str] | None = None


def _default_approval_type(value: Any) -> Any:
    """The SDK marks `type` optional: a result carries `tool_return`, a decision `approve`."""
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "tool" if "tool_return" in value else "approval"}
    return value


Approval = Annotated[ApprovalDecision | ToolResult, Field(discriminator="type")]


class ApprovalCreate(RequestModel):
    type: Literal["approval"]
    approvals: list[Approval] | None = Field(default=None, max_length=REQUEST_MESSAGES_MAX)
    # The legacy single-call form: one decision for the pending request.
    approve: bool | None = None
    approval_request_id: str | None = None
    reason: str | None = Field(default=None, max_length=APPROVAL_REASON_CHARS_MAX)
    otid: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _approval_types(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("approvals"), list):
            return {**data, "approvals": [_default_approval_type(a) for a in data["approvals"]]}
        return data


class ToolReturnCreate(RequestModel):
    """Client tool results sent on their own; treated as an approval reply."""

    type: Literal["tool_return"]
    tool_returns: list[ToolResult] = Field(max_length=REQUEST_MESSAGES_MAX)
    otid: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _result_types(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("tool_returns"), list):
            returns = [
                {**r, "type": "tool"} if isinstance(r, dict) else r for r in data["tool_returns"]
            ]
            return {**data, "tool_returns": returns}
        return data


class ClientTool(RequestModel):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ClientSkill(RequestModel):
    name: str
    description: str
    location: str


def _default_message_type(value: Any) -> Any:
    """Letta treats a message without `type` as a plain message."""
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "message"}
    return value


InputMessage = Annotated[
    MessageCreate | ApprovalCreate | ToolReturnCreate, Field(discriminator="type")
]


class LettaRequest(RequestModel):
    messages: list[InputMessage] | None = Field(default=None, max_length=REQUEST_MESSAGES_MAX)
    input: str | list[ContentPart] | None = None
    max_steps: int = Field(default=MAX_STEPS_DEFAULT, ge=1, le=MAX_STEPS_LIMIT)
    use_assistant_message: bool = True
    assistant_message_tool_name: str = "send_message"
    assistant_message_tool_kwarg: str = "message"
    include_return_message_types: list[LettaMessageType] | None = None
    streaming: bool = False
    stream_tokens: bool = False
    include_pings: bool = True
    background: bool = False
    client_tools: list[ClientTool] | None = None
    client_skills: list[ClientSkill] | None = None
    override_model: str | None = None
    override_system: str | None = None
    include_compaction_messages: bool = False
    enable_thinking: bool | str = True
    callback_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _message_types(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            return {**data, "messages": [_default_message_type(m) for m in data["messages"]]}
        return data


class ConversationMessageRequest(LettaRequest):
    """A send to a conversation: streams unless asked not to; `agent_id` names the agent
    when the conversation is `default`."""

    streaming: bool = True
    agent_id: str | None = None


class RetrieveStreamRequest(RequestModel):
    """Reattach to a background run's stream after `starting_after` (a seq id)."""

    agent_id: str | None = None
    run_id: str | None = None
    otid: str | None = None
    starting_after: int = Field(default=0, ge=0)
    include_pings: bool = True
    poll_interval: float = Field(default=0.1, gt=0, le=10)
    batch_size: int = Field(default=100, ge=1, le=STREAM_BATCH_SIZE_MAX)


# Stored -------------------------------------------------------------------------------


class StoredToolCall(ResponseModel):
    id: str
    name: str
    arguments: str


class CodeCallAnswer(ResponseModel):
    """One tool call code made before it was paused, and what it was answered: replayed,
    not run again, when the code runs again."""

    name: str
    arguments: dict[str, Any]
    ok: bool
    value: Any = None


class CodePause(ResponseModel):
    """Code stopped at a tool call that waits for approval (or for the client to run it).
    The approval request holds it: when the reply comes, `call` (the model's
    run_code_with_tools call) runs again from its start with `answers` replayed, the waiting
    call is answered by the reply, and `then` (the step's calls after `call`) run after."""

    call: StoredToolCall
    # The call that waits (what the approval request shows); its id is `call`'s, suffixed.
    waiting: StoredToolCall
    answers: list[CodeCallAnswer] = Field(default_factory=list)
    then: list[StoredToolCall] = Field(default_factory=list)


class Message(ResponseModel):
    """A stored message: one row of an agent's history, in LLM terms."""

    id: str
    agent_id: str
    conversation_id: str | None = None
    role: MessageRole
    # Plain text for system/user/assistant; the packaged return for tool messages.
    text: str | None = None
    content_parts: list[dict[str, Any]] | None = None
    reasoning: str | None = None
    tool_calls: list[StoredToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    tool_name: str | None = None
    # For tool messages: the unwrapped return, its status and captured output.
    tool_return: str | None = None
    tool_status: Literal["success", "error"] | None = None
    stdout: list[str] | None = None
    stderr: list[str] | None = None
    name: str | None = None
    otid: str | None = None
    sender_id: str | None = None
    run_id: str | None = None
    step_id: str | None = None
    # Hidden from clients (heartbeats, system nudges) but sent to the model.
    hidden: bool = False
    # An assistant message whose tool calls wait for the client's approval (or result).
    approval_request: bool = False
    # Of an approval request's tool calls, those that need the client (None: all of them);
    # the others run when the reply arrives.
    approval_tool_call_ids: list[str] | None = None
    # An approval reply (role `approval`): what the client decided or returned, per call.
    approvals: list[dict[str, Any]] | None = None
    approve: bool | None = None
    approval_request_id: str | None = None
    reason: str | None = None
    # A compaction summary (role `summary`): the summary itself; `text` is what the model reads.
    summary: str | None = None
    # An approval request for a call made by code (not by the model: never sent to it).
    code_pause: CodePause | None = None
    created_at: dt.datetime

    def needs_client(self, tool_call_id: str) -> bool:
        ids = self.approval_tool_call_ids
        return self.approval_request and (ids is None or tool_call_id in ids)


# Responses ----------------------------------------------------------------------------


class ToolCallOut(ResponseModel):
    name: str | None = None
    arguments: str | None = None
    tool_call_id: str | None = None


class LettaMessage(ResponseModel):
    """Every item a client reads: the fields common to all message types, plus the
    type-specific ones (None when they do not apply are left out of the JSON)."""

    id: str
    date: dt.datetime
    message_type: str
    otid: str | None = None
    run_id: str | None = None
    step_id: str | None = None
    seq_id: int | None = None
    sender_id: str | None = None
    name: str | None = None
    is_err: bool | None = None
    content: str | list[dict[str, Any]] | None = None
    reasoning: str | None = None
    source: str | None = None
    signature: str | None = None
    tool_call: ToolCallOut | None = None
    tool_calls: list[ToolCallOut] | None = None
    tool_return: str | None = None
    status: Literal["success", "error"] | None = None
    tool_call_id: str | None = None
    stdout: list[str] | None = None
    stderr: list[str] | None = None
    approvals: list[dict[str, Any]] | None = None
    approve: bool | None = None
    approval_request_id: str | None = None
    reason: str | None = None
    summary: str | None = None
    compaction_stats: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _without_nones(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Fields of other message types are left out rather than sent as null."""
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class StopReasonOut(ResponseModel):
    message_type: Literal["stop_reason"] = "stop_reason"
    stop_reason: StopReason


class UsageStatistics(ResponseModel):
    message_type: Literal["usage_statistics"] = "usage_statistics"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    step_count: int = 0
    run_ids: list[str] = Field(default_factory=list)
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    context_tokens: int | None = None


class LettaResponse(ResponseModel):
    messages: list[LettaMessage]
    stop_reason: StopReasonOut
    usage: UsageStatistics


class Run(ResponseModel):
    id: str
    agent_id: str
    conversation_id: str | None = None
    status: RunStatus = "created"
    stop_reason: StopReason | None = None
    background: bool = False
    metadata: dict[str, Any] | None = None
    request_config: dict[str, Any] | None = None
    callback_url: str | None = None
    total_duration_ns: int | None = None
    ttft_ns: int | None = None
    created_at: dt.datetime
    completed_at: dt.datetime | None = None
    # Kelpie: totals across the run's steps.
    usage: UsageStatistics | None = None
    # Kelpie: a digest of the request's message otids; a retried background send with the
    # same otids reattaches to this run instead of starting another.
    request_token: str | None = None


# The data of the event that ends every stored stream.
STREAM_DONE: Final = "[DONE]"


class RunEvent(ResponseModel):
    """One streamed event of a background run, as stored; a resumed stream replays these
    in seq order."""

    run_id: str
    seq_id: int = Field(ge=1)
    # The SSE event name: None for plain data events, "error" for the error event.
    event: str | None = None
    # The SSE data: an item's JSON, or STREAM_DONE.
    data: str


class Step(ResponseModel):
    id: str
    run_id: str | None = None
    agent_id: str
    model: str | None = None
    model_endpoint: str | None = None
    provider_name: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    stop_reason: StopReason | None = None
    status: Literal["pending", "success", "failed", "cancelled"] = "success"
    created_at: dt.datetime

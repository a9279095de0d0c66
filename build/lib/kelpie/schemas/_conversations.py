"""Conversations: threads of one agent, each with its own in-context messages and system
message, so several can run at once (letta-api.md §1.5, §2.10)."""

import datetime as dt
from typing import Any, Final

from pydantic import Field

from kelpie.schemas._base import RequestModel, ResponseModel
from kelpie.schemas._models import CONTEXT_WINDOW_TOKENS_MAX

CONVERSATION_SUMMARY_CHARS_MAX: Final = 10_000
CONVERSATION_DESCRIPTION_CHARS_MAX: Final = 10_000
# The path id that names an agent's own thread (with `agent_id` beside it).
DEFAULT_CONVERSATION_ID: Final = "default"


class Conversation(ResponseModel):
    id: str
    agent_id: str
    summary: str | None = None
    description: str | None = None
    archived: bool = False
    archived_at: dt.datetime | None = None
    hidden: bool = False
    in_context_message_ids: list[str] = Field(default_factory=list)
    last_message_at: dt.datetime | None = None
    model: str | None = None
    model_settings: dict[str, Any] | None = None
    context_window_limit: int | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    # Kelpie: messages a fork took over from its source; listed as part of its history.
    forked_message_ids: list[str] = Field(default_factory=list)


class ConversationFields(RequestModel):
    summary: str | None = Field(default=None, max_length=CONVERSATION_SUMMARY_CHARS_MAX)
    description: str | None = Field(default=None, max_length=CONVERSATION_DESCRIPTION_CHARS_MAX)
    model: str | None = None
    model_settings: dict[str, Any] | None = None
    context_window_limit: int | None = Field(default=None, ge=1, le=CONTEXT_WINDOW_TOKENS_MAX)


class ConversationCreate(ConversationFields):
    hidden: bool = False


class ConversationUpdate(ConversationFields):
    archived: bool | None = None
    last_message_at: dt.datetime | None = None


class CompactionRequest(RequestModel):
    agent_id: str | None = None
    compaction_settings: dict[str, Any] | None = None


class CompactionResponse(ResponseModel):
    summary: str
    num_messages_before: int
    num_messages_after: int

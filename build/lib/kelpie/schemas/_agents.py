"""Agents (Letta's AgentState, CreateAgent and UpdateAgent)."""

import datetime as dt
from typing import Any, Final, Literal

from pydantic import Field, field_validator

from kelpie.schemas._base import Identifier, RequestModel, ResponseModel
from kelpie.schemas._blocks import Block, BlockCreate
from kelpie.schemas._models import CONTEXT_WINDOW_TOKENS_MAX, EmbeddingConfig, LlmConfig
from kelpie.schemas._tools import Tool, ToolRule

AGENT_NAME_CHARS_MAX: Final = 200
AGENT_TAGS_MAX: Final = 100
AGENT_TAG_CHARS_MAX: Final = 200
AGENT_SYSTEM_CHARS_MAX: Final = 1_000_000
AGENT_ATTACHMENTS_MAX: Final = 500

AgentType = Literal[
    "memgpt_agent",
    "memgpt_v2_agent",
    "letta_v1_agent",
    "react_agent",
    "workflow_agent",
    "split_thread_agent",
    "sleeptime_agent",
    "voice_convo_agent",
    "voice_sleeptime_agent",
]
AGENT_TYPE_DEFAULT: Final = "letta_v1_agent"

# `include` values the agent endpoints accept (Letta's AgentRelationships).
AgentInclude = Literal[
    "agent.blocks",
    "agent.tools",
    "agent.tags",
    "agent.sources",
    "agent.secrets",
    "agent.identities",
    "agent.managed_group",
    "agent.pending_approval",
]

TagList = list[str]


class Memory(ResponseModel):
    blocks: list[Block] = Field(default_factory=list)
    file_blocks: list[dict[str, Any]] = Field(default_factory=list)
    agent_type: str | None = None
    git_enabled: bool | None = None
    prompt_template: str | None = None


class Secret(ResponseModel):
    key: str
    value: str | None = None


class AgentConfig(ResponseModel):
    """What is stored for an agent besides its relationships (blocks, tools, tags)."""

    id: str
    name: str
    agent_type: AgentType = AGENT_TYPE_DEFAULT
    system: str = ""
    description: str | None = None
    metadata: dict[str, Any] | None = None
    llm_config: LlmConfig
    embedding_config: EmbeddingConfig | None = None
    model: str | None = None
    embedding: str | None = None
    model_settings: dict[str, Any] | None = None
    compaction_settings: dict[str, Any] | None = None
    tool_rules: list[ToolRule] = Field(default_factory=list)
    message_ids: list[str] = Field(default_factory=list)
    enable_sleeptime: bool | None = None
    hidden: bool | None = None
    timezone: str | None = "UTC"
    message_buffer_autoclear: bool = False
    max_files_open: int | None = None
    per_file_view_window_char_limit: int | None = None
    response_format: dict[str, Any] | None = None
    secrets: list[Secret] = Field(default_factory=list)
    identity_ids: list[str] = Field(default_factory=list)
    project_id: str | None = None
    template_id: str | None = None
    base_template_id: str | None = None
    deployment_id: str | None = None
    entity_id: str | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    last_run_completion: dt.datetime | None = None
    last_run_duration_ms: int | None = None
    last_stop_reason: str | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class AgentState(AgentConfig):
    """The response shape. Relationships not asked for with `include` are empty lists."""

    memory: Memory = Field(default_factory=Memory)
    blocks: list[Block] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    tool_exec_environment_variables: list[Secret] = Field(default_factory=list)
    identities: list[dict[str, Any]] = Field(default_factory=list)
    multi_agent_group: dict[str, Any] | None = None
    managed_group: dict[str, Any] | None = None
    pending_approval: dict[str, Any] | None = None


class AgentFields(RequestModel):
    """Fields shared by agent create and update requests."""

    name: Identifier | None = Field(default=None, min_length=1, max_length=AGENT_NAME_CHARS_MAX)
    system: str | None = Field(default=None, max_length=AGENT_SYSTEM_CHARS_MAX)
    description: str | None = None
    metadata: dict[str, Any] | None = None
    model: str | None = None
    embedding: str | None = None
    llm_config: LlmConfig | None = None
    embedding_config: EmbeddingConfig | None = None
    model_settings: dict[str, Any] | None = None
    compaction_settings: dict[str, Any] | None = None
    context_window_limit: int | None = Field(default=None, ge=1, le=CONTEXT_WINDOW_TOKENS_MAX)
    max_tokens: int | None = Field(default=None, ge=1, le=CONTEXT_WINDOW_TOKENS_MAX)
    parallel_tool_calls: bool | None = None
    tool_ids: list[str] | None = Field(default=None, max_length=AGENT_ATTACHMENTS_MAX)
    block_ids: list[str] | None = Field(default=None, max_length=AGENT_ATTACHMENTS_MAX)
    tool_rules: list[ToolRule] | None = None
    tags: list[Identifier] | None = Field(default=None, max_length=AGENT_TAGS_MAX)
    enable_sleeptime: bool | None = None
    hidden: bool | None = None
    timezone: str | None = None
    message_buffer_autoclear: bool | None = None
    max_files_open: int | None = None
    per_file_view_window_char_limit: int | None = None
    response_format: dict[str, Any] | None = None
    secrets: dict[str, str] | None = None
    tool_exec_environment_variables: dict[str, str] | None = None
    identity_ids: list[str] | None = None
    project_id: str | None = None
    template_id: str | None = None
    base_template_id: str | None = None

    @field_validator("llm_config")
    @classmethod
    def _window_within_bound(cls, value: LlmConfig | None) -> LlmConfig | None:
        if value is not None and not 1 <= value.context_window <= CONTEXT_WINDOW_TOKENS_MAX:
            raise ValueError(
                f"context_window must be between 1 and {CONTEXT_WINDOW_TOKENS_MAX} tokens"
            )
        return value


class AgentCreate(AgentFields):
    agent_type: AgentType = AGENT_TYPE_DEFAULT
    memory_blocks: list[BlockCreate] | None = Field(default=None, max_length=AGENT_ATTACHMENTS_MAX)
    tools: list[str] | None = Field(default=None, max_length=AGENT_ATTACHMENTS_MAX)
    include_base_tools: bool = True
    include_base_tool_rules: bool | None = None
    initial_message_sequence: list[dict[str, Any]] | None = None


class AgentUpdate(AgentFields):
    message_ids: list[str] | None = None
    last_run_completion: dt.datetime | None = None
    last_run_duration_ms: int | None = None
    last_stop_reason: str | None = None

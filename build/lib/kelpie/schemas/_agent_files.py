"""Letta agent files (`.af`): the JSON an agent is exported to and imported from.

The shapes follow Letta 0.16's `AgentFileSchema` (letta/schemas/agent_file.py). Inside a
file, entities refer to each other by file-local ids (`agent-0`, `block-3`, `tool-1`,
`message-12`); an import gives everything fresh ids. Parsing ignores unknown fields (files
from newer Letta versions carry extras); what Kelpie writes carries only fields Letta
reads, because Letta's tool model rejects unknown ones.
"""

import datetime as dt
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field

from kelpie.schemas._agents import AgentCreate
from kelpie.schemas._base import Identifier, RequestModel, ResponseModel
from kelpie.schemas._blocks import BLOCK_LABEL_CHARS_MAX, BLOCK_VALUE_CHARS_MAX
from kelpie.schemas._tools import (
    RETURN_CHAR_LIMIT_DEFAULT,
    SOURCE_CODE_CHARS_MAX,
    NpmRequirement,
    PipRequirement,
    ToolType,
)

AGENT_FILE_AGENTS_MAX: Final = 100
AGENT_FILE_BLOCKS_MAX: Final = 5_000
AGENT_FILE_TOOLS_MAX: Final = 5_000
AGENT_FILE_MESSAGES_MAX: Final = 100_000  # per agent

# Every role Letta stores; Kelpie keeps system, user, assistant and tool messages.
AgentFileMessageRole = Literal[
    "system", "user", "assistant", "tool", "function", "approval", "summary"
]


# Schemas build on first use, not at import: start-up stays fast (an import is rare).
_DEFERRED: Final = ConfigDict(defer_build=True)


class _FileModel(RequestModel):
    model_config = _DEFERRED


class AgentFileToolCallFunction(_FileModel):
    name: str
    arguments: str = ""


class AgentFileToolCall(_FileModel):
    """An OpenAI-style tool call, as Letta stores them on assistant messages."""

    id: str
    type: Literal["function"] = "function"
    function: AgentFileToolCallFunction


class AgentFileToolReturn(_FileModel):
    tool_call_id: str | None = None
    status: Literal["success", "error"] = "success"
    stdout: list[str] | None = None
    stderr: list[str] | None = None
    # The packaged return: a string, or (newer Letta) a list of text/image parts.
    func_response: str | list[dict[str, Any]] | None = None


class AgentFileMessage(_FileModel):
    """Letta's `MessageSchema`: one stored message in Letta's own shape."""

    type: Literal["message"] | None = "message"
    role: AgentFileMessageRole
    content: str | list[dict[str, Any]] = Field(default_factory=list)
    name: str | None = None
    otid: str | None = None
    sender_id: str | None = None
    batch_item_id: str | None = None
    group_id: str | None = None
    id: str = Field(min_length=1)
    model: str | None = None
    agent_id: str | None = None
    tool_calls: list[AgentFileToolCall] | None = None
    tool_call_id: str | None = None
    tool_returns: list[AgentFileToolReturn] | None = None
    created_at: dt.datetime | None = None
    approve: bool | None = None
    approval_request_id: str | None = None
    denial_reason: str | None = None
    approvals: list[dict[str, Any]] | None = None


class AgentFileAgent(AgentCreate):
    """Letta's `AgentSchema`: the create request of an agent plus its file id, its history
    and its references to the file's blocks and tools (by file id)."""

    model_config = _DEFERRED

    id: str = Field(min_length=1)
    in_context_message_ids: list[str] = Field(default_factory=list)
    messages: list[AgentFileMessage] = Field(
        default_factory=list, max_length=AGENT_FILE_MESSAGES_MAX
    )
    files_agents: list[dict[str, Any]] = Field(default_factory=list)
    group_ids: list[str] = Field(default_factory=list)
    source_ids: list[str] | None = None
    folder_ids: list[str] | None = None
    include_multi_agent_tools: bool = False
    include_default_source: bool = False
    embedding_chunk_size: int | None = None
    max_reasoning_tokens: int | None = None
    enable_reasoner: bool | None = False
    reasoning: bool | None = None
    from_template: str | None = None
    template: bool = False
    project: str | None = None
    memory_variables: dict[str, str] | None = None


class AgentFileBlock(_FileModel):
    """Letta's `BlockSchema`. `limit` is not checked against `value` here: Letta stopped
    enforcing limits, and real files carry blocks over their limit."""

    id: str = Field(min_length=1)
    value: str = Field(max_length=BLOCK_VALUE_CHARS_MAX)
    limit: int | None = Field(default=None, ge=1, le=BLOCK_VALUE_CHARS_MAX)
    label: Identifier = Field(min_length=1, max_length=BLOCK_LABEL_CHARS_MAX)
    description: str | None = None
    read_only: bool = False
    metadata: dict[str, Any] | None = None
    tags: list[str] | None = None
    hidden: bool | None = None
    project_id: str | None = None
    template_name: str | None = None
    is_template: bool = False
    template_id: str | None = None
    base_template_id: str | None = None
    deployment_id: str | None = None
    entity_id: str | None = None
    preserve_on_migration: bool | None = False


class AgentFileTool(ResponseModel):
    """Letta's `ToolSchema`, field for field (Letta rejects a tool with any other field)."""

    model_config = _DEFERRED

    id: str = Field(min_length=1)
    tool_type: ToolType = "custom"
    description: str | None = None
    source_type: str | None = None
    name: str | None = None
    tags: list[str] | None = None
    source_code: str | None = Field(default=None, max_length=SOURCE_CODE_CHARS_MAX)
    json_schema: dict[str, Any] | None = None
    args_json_schema: dict[str, Any] | None = None
    return_char_limit: int | None = RETURN_CHAR_LIMIT_DEFAULT
    pip_requirements: list[PipRequirement] | None = None
    npm_requirements: list[NpmRequirement] | None = None
    default_requires_approval: bool | None = None
    enable_parallel_execution: bool | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    metadata_: dict[str, Any] | None = None
    project_id: str | None = None


class AgentFile(_FileModel):
    """The whole file. Groups, folders (`sources`, `files`), MCP servers and skills are
    read and kept out of the import: Kelpie has none of those yet."""

    agents: list[AgentFileAgent] = Field(min_length=1, max_length=AGENT_FILE_AGENTS_MAX)
    groups: list[dict[str, Any]] = Field(default_factory=list)
    blocks: list[AgentFileBlock] = Field(default_factory=list, max_length=AGENT_FILE_BLOCKS_MAX)
    files: list[dict[str, Any]] = Field(default_factory=list)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[AgentFileTool] = Field(default_factory=list, max_length=AGENT_FILE_TOOLS_MAX)
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)
    skills: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: dt.datetime | None = None


class ImportedAgents(ResponseModel):
    """The answer to `POST /v1/agents/import`."""

    agent_ids: list[str]

"""Tools and tool rules (Letta's Tool, ToolCreate, ToolUpdate and the ToolRule union)."""

import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import Field

from kelpie.schemas._base import Identifier, RequestModel, ResponseModel

RETURN_CHAR_LIMIT_DEFAULT: Final = 50_000
RETURN_CHAR_LIMIT_MAX: Final = 1_000_000
SOURCE_CODE_CHARS_MAX: Final = 200_000

ToolType = Literal[
    "custom",
    "letta_core",
    "letta_memory_core",
    "letta_multi_agent_core",
    "letta_sleeptime_core",
    "letta_voice_sleeptime_core",
    "letta_builtin",
    "letta_files_core",
    "external_langchain",
    "external_composio",
    "external_mcp",
]


class PipRequirement(RequestModel):
    name: str = Field(min_length=1)
    version: str | None = None


class NpmRequirement(RequestModel):
    name: str = Field(min_length=1)
    version: str | None = None


class Tool(ResponseModel):
    id: str
    name: str
    description: str | None = None
    tool_type: ToolType = "custom"
    source_type: str | None = None
    source_code: str | None = None
    json_schema: dict[str, Any] | None = None
    args_json_schema: dict[str, Any] | None = None
    return_char_limit: int = RETURN_CHAR_LIMIT_DEFAULT
    tags: list[str] = Field(default_factory=list)
    pip_requirements: list[PipRequirement] | None = None
    npm_requirements: list[NpmRequirement] | None = None
    default_requires_approval: bool | None = None
    enable_parallel_execution: bool | None = None
    # Letta's JSON key for tool metadata carries a trailing underscore.
    metadata_: dict[str, Any] | None = None
    project_id: str | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class ToolFields(RequestModel):
    description: str | None = None
    json_schema: dict[str, Any] | None = None
    args_json_schema: dict[str, Any] | None = None
    source_type: Literal["python", "typescript"] | None = None
    tags: list[Identifier] | None = None
    return_char_limit: int | None = Field(default=None, ge=1, le=RETURN_CHAR_LIMIT_MAX)
    pip_requirements: list[PipRequirement] | None = None
    npm_requirements: list[NpmRequirement] | None = None
    default_requires_approval: bool | None = None
    enable_parallel_execution: bool | None = None
    metadata_: dict[str, Any] | None = None
    project_id: str | None = None


class ToolCreate(ToolFields):
    source_code: str = Field(min_length=1, max_length=SOURCE_CODE_CHARS_MAX)


class ToolUpdate(ToolFields):
    source_code: str | None = Field(default=None, min_length=1, max_length=SOURCE_CODE_CHARS_MAX)


class ToolRunFromSource(RequestModel):
    """`POST /v1/tools/run`: run a function from source without storing it (Letta's body)."""

    source_code: str = Field(min_length=1, max_length=SOURCE_CODE_CHARS_MAX)
    args: dict[str, Any] = Field(default_factory=dict)
    env_vars: dict[str, str] | None = None
    name: str | None = None
    source_type: Literal["python", "typescript"] | None = None
    args_json_schema: dict[str, Any] | None = None
    json_schema: dict[str, Any] | None = None
    pip_requirements: list[PipRequirement] | None = None
    npm_requirements: list[NpmRequirement] | None = None


class ToolRunRequest(RequestModel):
    """`POST /v1/agents/{id}/tools/{tool_name}/run` (letta-client `agents.tools.run`)."""

    args: dict[str, Any] = Field(default_factory=dict)


class ToolExecutionResult(ResponseModel):
    status: Literal["success", "error"]
    func_return: Any = None
    agent_state: Any = None
    stdout: list[str] = Field(default_factory=list)
    stderr: list[str] = Field(default_factory=list)
    sandbox_config_fingerprint: str | None = None


class _Rule(RequestModel):
    tool_name: str = Field(min_length=1)
    prompt_template: str | None = None


class InitToolRule(_Rule):
    type: Literal["run_first"] = "run_first"
    args: dict[str, Any] | None = None


class TerminalToolRule(_Rule):
    type: Literal["exit_loop"] = "exit_loop"


class ContinueToolRule(_Rule):
    type: Literal["continue_loop"] = "continue_loop"


class ChildToolRule(_Rule):
    type: Literal["constrain_child_tools"] = "constrain_child_tools"
    children: list[str]
    child_arg_nodes: list[dict[str, Any]] | None = None


class ConditionalToolRule(_Rule):
    type: Literal["conditional"] = "conditional"
    default_child: str | None = None
    child_output_mapping: dict[str, str]
    require_output_mapping: bool = False


class MaxCountPerStepToolRule(_Rule):
    type: Literal["max_count_per_step"] = "max_count_per_step"
    max_count_limit: int = Field(ge=1)


class ParentToolRule(_Rule):
    type: Literal["parent_last_tool"] = "parent_last_tool"
    children: list[str]


class RequiredBeforeExitToolRule(_Rule):
    type: Literal["required_before_exit"] = "required_before_exit"


class RequiresApprovalToolRule(_Rule):
    type: Literal["requires_approval"] = "requires_approval"


ToolRule = Annotated[
    InitToolRule
    | TerminalToolRule
    | ContinueToolRule
    | ChildToolRule
    | ConditionalToolRule
    | MaxCountPerStepToolRule
    | ParentToolRule
    | RequiredBeforeExitToolRule
    | RequiresApprovalToolRule,
    Field(discriminator="type"),
]

"""Tools: what an agent can call, described the way Letta describes it.

This layer owns three things so far:

- deriving a custom tool's name, description and OpenAI function schema from its Python
  source, statically, with Letta's rules (`derive_tool_schema`);
- Letta's built-in tool set as data: schemas and tool types (`BASE_TOOLS`), the tools each
  agent type gets at create (`default_tool_names`) and the tool rules that come with them
  (`base_tool_rules`);
- Letta's core-memory tools as pure functions over an agent's blocks (`run_memory_tool`),
  returning the net `MemoryEdit` for the agent loop to commit;
- Kelpie's working-memory tools (`WORKING_MEMORY_TOOLS`, attached by name only) and the
  checking of their calls (`parse_working_memory_call`); `BUILTIN_TOOLS` is both sets, as
  every server stores them;
- running tools: the `ToolRegistry` picks the runner of a tool by name or type (built-in
  tools in process, custom tools in the sandbox) and `execute`s one call against a
  `ToolSession`, the turn's pending effects that commit with the step.
"""

from kelpie.tools._base_tools import (
    BASE_TOOL_NAMES,
    BASE_TOOLS,
    BASE_TOOLS_BY_NAME,
    BUILTIN_TOOLS,
    base_tool_rules,
    default_tool_names,
)
from kelpie.tools._builtin import BuiltinTool
from kelpie.tools._memory import MEMORY_TOOL_NAMES, run_memory_tool
from kelpie.tools._memory_edit import MemoryBlock, MemoryEdit
from kelpie.tools._registry import (
    ToolRegistry,
    ToolRunner,
    UnavailableRunner,
    default_registry,
    exception_text,
)
from kelpie.tools._returned import ToolReturn
from kelpie.tools._run_custom import CustomToolRunner, agent_state_json, changed_values, tool_return
from kelpie.tools._run_mcp import (
    McpToolRunner,
    call_mcp_tool,
    mcp_spec,
    mcp_tool_record,
    server_id_of,
)
from kelpie.tools._sandbox_settings import SANDBOX_METADATA_KEY, SandboxSettings, sandbox_settings
from kelpie.tools._schema import (
    INJECTED_PARAMS,
    LOOP_ARGUMENTS,
    DerivedTool,
    FunctionSignature,
    check_schema_matches,
    derive_tool_schema,
    function_signature,
)
from kelpie.tools._session import CodeResume, ToolOutcome, ToolSession
from kelpie.tools._working_memory import (
    WORKING_MEMORY_TOOL_NAMES,
    WORKING_MEMORY_TOOLS,
    WorkingMemoryCall,
    parse_working_memory_call,
)

__all__ = [
    "BASE_TOOLS",
    "BASE_TOOLS_BY_NAME",
    "BASE_TOOL_NAMES",
    "BUILTIN_TOOLS",
    "INJECTED_PARAMS",
    "LOOP_ARGUMENTS",
    "MEMORY_TOOL_NAMES",
    "SANDBOX_METADATA_KEY",
    "WORKING_MEMORY_TOOLS",
    "WORKING_MEMORY_TOOL_NAMES",
    "BuiltinTool",
    "CodeResume",
    "CustomToolRunner",
    "DerivedTool",
    "FunctionSignature",
    "McpToolRunner",
    "MemoryBlock",
    "MemoryEdit",
    "SandboxSettings",
    "ToolOutcome",
    "ToolRegistry",
    "ToolReturn",
    "ToolRunner",
    "ToolSession",
    "UnavailableRunner",
    "WorkingMemoryCall",
    "agent_state_json",
    "base_tool_rules",
    "call_mcp_tool",
    "changed_values",
    "check_schema_matches",
    "default_registry",
    "default_tool_names",
    "derive_tool_schema",
    "exception_text",
    "function_signature",
    "mcp_spec",
    "mcp_tool_record",
    "parse_working_memory_call",
    "run_memory_tool",
    "sandbox_settings",
    "server_id_of",
    "tool_return",
]

"""Tools: what an agent can call, described the way Letta describes it.

This layer owns two things so far:

- deriving a custom tool's name, description and OpenAI function schema from its Python
  source, statically, with Letta's rules (`derive_tool_schema`);
- Letta's built-in tool set as data: schemas and tool types (`BASE_TOOLS`), the tools each
  agent type gets at create (`default_tool_names`) and the tool rules that come with them
  (`base_tool_rules`).

The executors that run tools arrive later and will live here too.
"""

from kelpie.tools._base_tools import (
    BASE_TOOL_NAMES,
    BASE_TOOLS,
    BASE_TOOLS_BY_NAME,
    BuiltinTool,
    base_tool_rules,
    default_tool_names,
)
from kelpie.tools._schema import INJECTED_PARAMS, DerivedTool, derive_tool_schema

__all__ = [
    "BASE_TOOLS",
    "BASE_TOOLS_BY_NAME",
    "BASE_TOOL_NAMES",
    "INJECTED_PARAMS",
    "BuiltinTool",
    "DerivedTool",
    "base_tool_rules",
    "default_tool_names",
    "derive_tool_schema",
]

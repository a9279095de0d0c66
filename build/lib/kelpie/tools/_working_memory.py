"""The working-memory tools (a Kelpie extension): their schemas, and the checking of a
call's arguments into a `WorkingMemoryCall` for the agent loop to run against the store.

Letta clients do not know these tools, so no agent type gets them by default; they are
stored with the built-in tools and attached by name (`tools=["working_memory_set", …]`).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from pydantic import JsonValue

from kelpie.schemas import (
    WORKING_MEMORY_KEY_CHARS_MAX,
    WORKING_MEMORY_KEYS_MAX,
    WORKING_MEMORY_TTL_S_MAX,
    working_memory_key_error,
    working_memory_ttl_error,
    working_memory_value_json,
)
from kelpie.tools._builtin import BuiltinTool, builtin_tool, integer_param, text_param

_KEY: Final = (
    f"The key: 1 to {WORKING_MEMORY_KEY_CHARS_MAX} characters from A-Z, a-z, 0-9 and _ . : -"
    " (use a prefix such as 'task:' to group keys)."
)

WORKING_MEMORY_SET = builtin_tool(
    "working_memory_set",
    "letta_memory_core",
    "Store a value under a key in your working memory: scratch state for the task at hand,"
    " kept across turns but not shown in your prompt. Setting a key replaces its value and"
    f" its time to live. An agent holds at most {WORKING_MEMORY_KEYS_MAX} keys.",
    {
        "key": text_param(_KEY),
        "value": {
            "description": "The value: any JSON (text, number, boolean, list or object), not null."
        },
        "ttl_s": integer_param(
            f"Seconds until the key expires, 1 to {WORKING_MEMORY_TTL_S_MAX}. Leave it out to"
            " keep the key until you delete it."
        ),
    },
    ["key", "value"],
)

WORKING_MEMORY_GET = builtin_tool(
    "working_memory_get",
    "letta_memory_core",
    "Read the value stored under a key in your working memory.",
    {"key": text_param(_KEY)},
    ["key"],
)

WORKING_MEMORY_DELETE = builtin_tool(
    "working_memory_delete",
    "letta_memory_core",
    "Delete a key from your working memory.",
    {"key": text_param(_KEY)},
    ["key"],
)

WORKING_MEMORY_LIST = builtin_tool(
    "working_memory_list",
    "letta_memory_core",
    "List the keys in your working memory, in key order.",
    {"prefix": text_param("Only keys that start with this text. Leave it out to list every key.")},
)

WORKING_MEMORY_TOOLS: Final[tuple[BuiltinTool, ...]] = (
    WORKING_MEMORY_SET,
    WORKING_MEMORY_GET,
    WORKING_MEMORY_DELETE,
    WORKING_MEMORY_LIST,
)
WORKING_MEMORY_TOOL_NAMES: Final = frozenset(tool.name for tool in WORKING_MEMORY_TOOLS)


@dataclasses.dataclass(frozen=True)
class WorkingMemoryCall:
    """One checked call: `tool` is its name; the other fields are its arguments."""

    tool: str
    key: str = ""
    value: JsonValue = None
    ttl_s: int | None = None
    prefix: str = ""


def parse_working_memory_call(name: str, arguments: Mapping[str, Any]) -> WorkingMemoryCall | str:
    """The call checked against the tool's schema and Kelpie's limits, or the error text
    the model gets back. Raises KeyError for a name not in WORKING_MEMORY_TOOL_NAMES."""
    parameters = _SCHEMAS[name]["parameters"]
    unexpected = sorted(set(arguments) - set(parameters["properties"]))
    if unexpected:
        return f"{name} got unexpected arguments: {', '.join(unexpected)}"
    missing = [p for p in parameters["required"] if arguments.get(p) is None]
    if missing:
        return f"{name} is missing required arguments: {', '.join(missing)}"
    if name == "working_memory_list":
        prefix = arguments.get("prefix") or ""
        error = working_memory_key_error(prefix, what="prefix")
        return f"{name}: {error}" if error else WorkingMemoryCall(name, prefix=prefix)
    key = arguments["key"]
    error = working_memory_key_error(key)
    if error is None and name == "working_memory_set":
        error = working_memory_ttl_error(arguments.get("ttl_s"))
        if error is None:
            try:
                working_memory_value_json(arguments["value"])
            except ValueError as failure:
                error = str(failure)
    if error is not None:
        return f"{name}: {error}"
    return WorkingMemoryCall(
        name, key=key, value=arguments.get("value"), ttl_s=arguments.get("ttl_s")
    )


_SCHEMAS: Final = {tool.name: tool.json_schema for tool in WORKING_MEMORY_TOOLS}

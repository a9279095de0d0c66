"""Letta's built-in (base) tools as data: names, tool types and OpenAI function schemas,
plus which of them an agent gets at create time and the tool rules that come with them.

Names, parameter names, JSON types and required-ness copy Letta's function signatures
(letta/functions/function_sets/base.py and builtin.py) so that agents built for Letta call
them unchanged. As in Letta, schemas carry no `default` keys; a parameter's default is
stated in its description and applied by the executor. Tool types follow Letta's
`upsert_base_tools`: `memory_insert` and `memory_replace` come from its sleep-time set, so
they are `letta_sleeptime_core` like `memory_rethink` and `memory_finish_edits`.

The schemas are shared module data: treat them as read-only and deep-copy before changing.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, get_args

from kelpie.schemas import ToolRule, ToolType
from kelpie.schemas._tools import ContinueToolRule, TerminalToolRule

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    tool_type: ToolType
    description: str
    json_schema: JsonSchema


# --- schema builders --------------------------------------------------------------------


def _string(description: str) -> JsonSchema:
    return {"type": "string", "description": description}


def _integer(description: str) -> JsonSchema:
    return {"type": "integer", "description": description}


def _boolean(description: str) -> JsonSchema:
    return {"type": "boolean", "description": description}


def _strings(description: str) -> JsonSchema:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _choice(values: Sequence[str], description: str) -> JsonSchema:
    return {"type": "string", "enum": list(values), "description": description}


def _tool(
    name: str,
    tool_type: ToolType,
    description: str,
    properties: dict[str, JsonSchema],
    required: Sequence[str] = (),
) -> BuiltinTool:
    parameters = {"type": "object", "properties": properties, "required": list(required)}
    schema = {"name": name, "description": description, "parameters": parameters}
    return BuiltinTool(name, tool_type, description, schema)


# --- the tools --------------------------------------------------------------------------

_LABEL = "Label of the memory block to edit."
_NO_LINE_NUMBERS = "Do not include the line-number prefixes shown in the memory view."

SEND_MESSAGE = _tool(
    "send_message",
    "letta_core",
    "Send a message to the user.",
    {"message": _string("The message text. Any unicode, emojis included, is allowed.")},
    ["message"],
)

CONVERSATION_SEARCH = _tool(
    "conversation_search",
    "letta_core",
    "Search earlier messages of this conversation by text and meaning, optionally filtered "
    "by role and date range.",
    {
        "query": _string(
            "What to look for. Leave it out to list messages by the other filters alone."
        ),
        "roles": {
            "type": "array",
            "items": {"type": "string", "enum": ["assistant", "user", "tool"]},
            "description": "Only return messages from these roles.",
        },
        "limit": _integer("Maximum number of messages to return. Defaults to 5."),
        "start_date": _string(
            "Only messages created at or after this time, inclusive. ISO 8601: 'YYYY-MM-DD' "
            "(from the start of that day) or 'YYYY-MM-DDTHH:MM'."
        ),
        "end_date": _string(
            "Only messages created at or before this time, inclusive. ISO 8601: 'YYYY-MM-DD' "
            "(through the end of that day) or 'YYYY-MM-DDTHH:MM'."
        ),
    },
)

ARCHIVAL_MEMORY_INSERT = _tool(
    "archival_memory_insert",
    "letta_core",
    "Store a self-contained fact or summary in long-term archival memory, where it can be "
    "found later by semantic search.",
    {
        "content": _string("The text to store. Make it understandable on its own."),
        "tags": _strings("Category tags that make the memory easier to find later."),
    },
    ["content"],
)

ARCHIVAL_MEMORY_SEARCH = _tool(
    "archival_memory_search",
    "letta_core",
    "Search long-term archival memory by meaning; results are ranked by relevance.",
    {
        "query": _string("What to look for, described in natural language."),
        "tags": _strings("Only return memories carrying these tags."),
        "tag_match_mode": _choice(
            ["any", "all"],
            "'any' matches memories with at least one of the tags, 'all' only memories with "
            "every tag. Defaults to 'any'.",
        ),
        "top_k": _integer("Maximum number of results to return. Defaults to 10."),
        "start_datetime": _string(
            "Only memories created after this time (ISO 8601, e.g. '2024-01-15' or "
            "'2024-01-15T14:30')."
        ),
        "end_datetime": _string("Only memories created before this time (ISO 8601)."),
    },
    ["query"],
)

CORE_MEMORY_APPEND = _tool(
    "core_memory_append",
    "letta_memory_core",
    "Append text to the end of a core memory block, on a new line.",
    {
        "label": _string(_LABEL),
        "content": _string("The text to append. Any unicode, emojis included, is allowed."),
    },
    ["label", "content"],
)

CORE_MEMORY_REPLACE = _tool(
    "core_memory_replace",
    "letta_memory_core",
    "Replace text in a core memory block. Use an empty new_content to delete text.",
    {
        "label": _string(_LABEL),
        "old_content": _string("The exact text to replace."),
        "new_content": _string("The replacement text."),
    },
    ["label", "old_content", "new_content"],
)

MEMORY_INSERT = _tool(
    "memory_insert",
    "letta_sleeptime_core",
    "Insert text at a given line of a memory block.",
    {
        "label": _string(_LABEL),
        "new_string": _string(f"The text to insert. {_NO_LINE_NUMBERS}"),
        "insert_line": _integer(
            "Line number after which to insert: 0 inserts at the top, -1 at the end. "
            "Defaults to -1."
        ),
    },
    ["label", "new_string"],
)

MEMORY_REPLACE = _tool(
    "memory_replace",
    "letta_sleeptime_core",
    "Replace one exact occurrence of a string in a memory block, for small precise edits. "
    "Do not use it to rewrite a whole block.",
    {
        "label": _string(_LABEL),
        "old_string": _string(
            "The text to replace. It must appear exactly once in the block, whitespace "
            f"included. {_NO_LINE_NUMBERS}"
        ),
        "new_string": _string(f"The replacement text. {_NO_LINE_NUMBERS}"),
    },
    ["label", "old_string", "new_string"],
)

MEMORY_RETHINK = _tool(
    "memory_rethink",
    "letta_sleeptime_core",
    "Rewrite a memory block completely, creating it if it does not exist. Use it to "
    "reorganize or condense a block, not for small edits.",
    {
        "label": _string("Label of the memory block to rewrite."),
        "new_memory": _string("The block's complete new contents."),
    },
    ["label", "new_memory"],
)

MEMORY_FINISH_EDITS = _tool(
    "memory_finish_edits",
    "letta_sleeptime_core",
    "Call this once all memory edits are done; it ends the editing turn.",
    {},
)

MEMORY_APPLY_PATCH = _tool(
    "memory_apply_patch",
    "letta_memory_core",
    "Apply a unified-diff style patch to memory. A patch without '***' headers edits the "
    "block named by label; a patch with '*** Add Block: <label>', '*** Delete Block: "
    "<label>', '*** Update Block: <label>' and '*** Move to: <label>' headers edits several "
    "blocks at once.",
    {
        "label": _string(
            "Label of the block to patch in single-block mode; an empty string when the "
            "patch uses '***' headers."
        ),
        "patch": _string(f"The patch: lines start with ' ', '-' or '+'. {_NO_LINE_NUMBERS}"),
    },
    ["label", "patch"],
)

MEMORY = _tool(
    "memory",
    "letta_memory_core",
    "Manage memory blocks addressed by paths such as '/memories/<label>': create a block, "
    "replace text in it, insert lines into it, delete it, or rename it and change its "
    "description.",
    {
        "command": _choice(
            ["create", "str_replace", "insert", "delete", "rename"], "The operation to run."
        ),
        "path": _string("Path of the block (create, str_replace, insert, delete, rename)."),
        "file_text": _string("Initial contents of the new block (create)."),
        "description": _string("Description of the block (create, rename)."),
        "old_string": _string("The exact text to replace (str_replace)."),
        "new_string": _string("The replacement text (str_replace)."),
        "insert_line": _integer("Line number at which to insert (insert)."),
        "insert_text": _string("The text to insert (insert)."),
        "old_path": _string("Current path of the block to rename (rename)."),
        "new_path": _string("New path for the block (rename)."),
    },
    ["command"],
)

WEB_SEARCH_CATEGORIES: Final = (
    "company",
    "research paper",
    "news",
    "pdf",
    "github",
    "tweet",
    "personal site",
    "linkedin profile",
    "financial report",
)

WEB_SEARCH = _tool(
    "web_search",
    "letta_builtin",
    "Search the web and return the most relevant pages with their summaries.",
    {
        "query": _string("The search query."),
        "num_results": _integer("Number of results to return, 1 to 100. Defaults to 10."),
        "category": _choice(WEB_SEARCH_CATEGORIES, "Restrict results to one kind of content."),
        "include_text": _boolean(
            "Return each page's full text instead of only its summary and highlights. "
            "Defaults to false."
        ),
        "include_domains": _strings("Only return results from these domains."),
        "exclude_domains": _strings("Never return results from these domains."),
        "start_published_date": _string("Only pages published after this date (ISO 8601)."),
        "end_published_date": _string("Only pages published before this date (ISO 8601)."),
        "user_location": _string("Two-letter country code to localize results, e.g. 'US'."),
    },
    ["query"],
)

FETCH_WEBPAGE = _tool(
    "fetch_webpage",
    "letta_builtin",
    "Fetch a web page and return its content as markdown text.",
    {"url": _string("URL of the page to fetch.")},
    ["url"],
)

RUN_CODE = _tool(
    "run_code",
    "letta_builtin",
    "Run code in a sandbox and return its output, errors and tracebacks.",
    {
        "code": _string("The code to run."),
        "language": _choice(["python", "js", "ts", "r", "java"], "Language of the code."),
    },
    ["code", "language"],
)

RUN_CODE_WITH_TOOLS = _tool(
    "run_code_with_tools",
    "letta_builtin",
    "Run Python code in a sandbox where the agent's tools can be called as functions; "
    "return its output, errors and tracebacks.",
    {"code": _string("The Python code to run.")},
    ["code"],
)

BASE_TOOLS: Final[tuple[BuiltinTool, ...]] = (
    SEND_MESSAGE,
    CONVERSATION_SEARCH,
    ARCHIVAL_MEMORY_INSERT,
    ARCHIVAL_MEMORY_SEARCH,
    CORE_MEMORY_APPEND,
    CORE_MEMORY_REPLACE,
    MEMORY_INSERT,
    MEMORY_REPLACE,
    MEMORY_RETHINK,
    MEMORY_FINISH_EDITS,
    MEMORY_APPLY_PATCH,
    MEMORY,
    WEB_SEARCH,
    FETCH_WEBPAGE,
    RUN_CODE,
    RUN_CODE_WITH_TOOLS,
)
BASE_TOOL_NAMES: Final = frozenset(tool.name for tool in BASE_TOOLS)
BASE_TOOLS_BY_NAME: Final[Mapping[str, BuiltinTool]] = MappingProxyType(
    {tool.name: tool for tool in BASE_TOOLS}
)


# --- defaults per agent type ------------------------------------------------------------

_DEFAULT_TOOLS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "letta_v1_agent": ("conversation_search", "memory_insert", "memory_replace"),
        "memgpt_v2_agent": (
            "send_message",
            "conversation_search",
            "memory_insert",
            "memory_replace",
        ),
        "memgpt_agent": (
            "send_message",
            "conversation_search",
            "core_memory_append",
            "core_memory_replace",
            "memory",
            "memory_apply_patch",
        ),
        "sleeptime_agent": (
            "memory_replace",
            "memory_insert",
            "memory_rethink",
            "memory_finish_edits",
        ),
    }
)

# Letta gives exit_loop to these and continue_loop to its other core and memory tools; the
# letta_builtin tools get no rule.
_EXIT_LOOP_TOOLS: Final = frozenset({"send_message", "memory_finish_edits"})
_CONTINUE_LOOP_TOOLS: Final = frozenset(
    tool.name
    for tool in BASE_TOOLS
    if tool.tool_type != "letta_builtin" and tool.name not in _EXIT_LOOP_TOOLS
)


def default_tool_names(agent_type: str) -> tuple[str, ...]:
    """Tools attached at create when `include_base_tools` is true; unknown types get none."""
    return _DEFAULT_TOOLS.get(agent_type, ())


def base_tool_rules(tool_names: Sequence[str]) -> list[ToolRule]:
    """The rules Letta adds for base tools, in the order given; other names get no rule."""
    rules: list[ToolRule] = []
    for name in dict.fromkeys(tool_names):
        if name in _EXIT_LOOP_TOOLS:
            rules.append(TerminalToolRule(tool_name=name))
        elif name in _CONTINUE_LOOP_TOOLS:
            rules.append(ContinueToolRule(tool_name=name))
    return rules


# --- self-check: a broken table fails at import, not in front of a client ---------------


def _check_tool(tool: BuiltinTool) -> None:
    schema = tool.json_schema
    parameters = schema["parameters"]
    missing = set(parameters["required"]) - set(parameters["properties"])
    if schema["name"] != tool.name or schema["description"] != tool.description:
        raise AssertionError(f"base tool {tool.name}: json_schema name/description disagree")
    if missing:
        raise AssertionError(f"base tool {tool.name}: required {sorted(missing)} not in properties")
    if tool.tool_type not in get_args(ToolType):
        raise AssertionError(f"base tool {tool.name}: unknown tool_type {tool.tool_type}")


def _check_tables() -> None:
    for tool in BASE_TOOLS:
        _check_tool(tool)
    if len(BASE_TOOL_NAMES) != len(BASE_TOOLS):
        raise AssertionError("base tool names are not unique")
    for agent_type, names in _DEFAULT_TOOLS.items():
        if not set(names) <= BASE_TOOL_NAMES:
            raise AssertionError(f"default tools of {agent_type} name an unknown tool")


_check_tables()

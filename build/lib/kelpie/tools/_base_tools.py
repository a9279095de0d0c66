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
from types import MappingProxyType
from typing import Final, get_args

from kelpie.schemas import ToolRule, ToolType
from kelpie.schemas._tools import ContinueToolRule, TerminalToolRule
from kelpie.tools._builtin import (
    BuiltinTool,
    boolean_param,
    builtin_tool,
    choice_param,
    integer_param,
    strings_param,
    text_param,
)
from kelpie.tools._working_memory import WORKING_MEMORY_TOOLS

# --- the tools --------------------------------------------------------------------------

_LABEL = "Label of the memory block to edit."
_NO_LINE_NUMBERS = "Do not include the line-number prefixes shown in the memory view."

SEND_MESSAGE = builtin_tool(
    "send_message",
    "letta_core",
    "Send a message to the user.",
    {"message": text_param("The message text. Any unicode, emojis included, is allowed.")},
    ["message"],
)

CONVERSATION_SEARCH = builtin_tool(
    "conversation_search",
    "letta_core",
    "Search earlier messages of this conversation by text and meaning, optionally filtered "
    "by role and date range.",
    {
        "query": text_param(
            "What to look for. Leave it out to list messages by the other filters alone."
        ),
        "roles": {
            "type": "array",
            "items": {"type": "string", "enum": ["assistant", "user", "tool"]},
            "description": "Only return messages from these roles.",
        },
        "limit": integer_param("Maximum number of messages to return. Defaults to 5."),
        "start_date": text_param(
            "Only messages created at or after this time, inclusive. ISO 8601: 'YYYY-MM-DD' "
            "(from the start of that day) or 'YYYY-MM-DDTHH:MM'."
        ),
        "end_date": text_param(
            "Only messages created at or before this time, inclusive. ISO 8601: 'YYYY-MM-DD' "
            "(through the end of that day) or 'YYYY-MM-DDTHH:MM'."
        ),
    },
)

ARCHIVAL_MEMORY_INSERT = builtin_tool(
    "archival_memory_insert",
    "letta_core",
    "Store a self-contained fact or summary in long-term archival memory, where it can be "
    "found later by semantic search.",
    {
        "content": text_param("The text to store. Make it understandable on its own."),
        "tags": strings_param("Category tags that make the memory easier to find later."),
    },
    ["content"],
)

ARCHIVAL_MEMORY_SEARCH = builtin_tool(
    "archival_memory_search",
    "letta_core",
    "Search long-term archival memory by meaning; results are ranked by relevance.",
    {
        "query": text_param("What to look for, described in natural language."),
        "tags": strings_param("Only return memories carrying these tags."),
        "tag_match_mode": choice_param(
            ["any", "all"],
            "'any' matches memories with at least one of the tags, 'all' only memories with "
            "every tag. Defaults to 'any'.",
        ),
        "top_k": integer_param("Maximum number of results to return. Defaults to 10."),
        "start_datetime": text_param(
            "Only memories created after this time (ISO 8601, e.g. '2024-01-15' or "
            "'2024-01-15T14:30')."
        ),
        "end_datetime": text_param("Only memories created before this time (ISO 8601)."),
    },
    ["query"],
)

CORE_MEMORY_APPEND = builtin_tool(
    "core_memory_append",
    "letta_memory_core",
    "Append text to the end of a core memory block, on a new line.",
    {
        "label": text_param(_LABEL),
        "content": text_param("The text to append. Any unicode, emojis included, is allowed."),
    },
    ["label", "content"],
)

CORE_MEMORY_REPLACE = builtin_tool(
    "core_memory_replace",
    "letta_memory_core",
    "Replace text in a core memory block. Use an empty new_content to delete text.",
    {
        "label": text_param(_LABEL),
        "old_content": text_param("The exact text to replace."),
        "new_content": text_param("The replacement text."),
    },
    ["label", "old_content", "new_content"],
)

MEMORY_INSERT = builtin_tool(
    "memory_insert",
    "letta_sleeptime_core",
    "Insert text at a given line of a memory block.",
    {
        "label": text_param(_LABEL),
        "new_string": text_param(f"The text to insert. {_NO_LINE_NUMBERS}"),
        "insert_line": integer_param(
            "Line number after which to insert: 0 inserts at the top, -1 at the end. "
            "Defaults to -1."
        ),
    },
    ["label", "new_string"],
)

MEMORY_REPLACE = builtin_tool(
    "memory_replace",
    "letta_sleeptime_core",
    "Replace one exact occurrence of a string in a memory block, for small precise edits. "
    "Do not use it to rewrite a whole block.",
    {
        "label": text_param(_LABEL),
        "old_string": text_param(
            "The text to replace. It must appear exactly once in the block, whitespace "
            f"included. {_NO_LINE_NUMBERS}"
        ),
        "new_string": text_param(f"The replacement text. {_NO_LINE_NUMBERS}"),
    },
    ["label", "old_string", "new_string"],
)

MEMORY_RETHINK = builtin_tool(
    "memory_rethink",
    "letta_sleeptime_core",
    "Rewrite a memory block completely, creating it if it does not exist. Use it to "
    "reorganize or condense a block, not for small edits.",
    {
        "label": text_param("Label of the memory block to rewrite."),
        "new_memory": text_param("The block's complete new contents."),
    },
    ["label", "new_memory"],
)

MEMORY_FINISH_EDITS = builtin_tool(
    "memory_finish_edits",
    "letta_sleeptime_core",
    "Call this once all memory edits are done; it ends the editing turn.",
    {},
)

MEMORY_APPLY_PATCH = builtin_tool(
    "memory_apply_patch",
    "letta_memory_core",
    "Apply a unified-diff style patch to memory. A patch without '***' headers edits the "
    "block named by label; a patch with '*** Add Block: <label>', '*** Delete Block: "
    "<label>', '*** Update Block: <label>' and '*** Move to: <label>' headers edits several "
    "blocks at once.",
    {
        "label": text_param(
            "Label of the block to patch in single-block mode; an empty string when the "
            "patch uses '***' headers."
        ),
        "patch": text_param(f"The patch: lines start with ' ', '-' or '+'. {_NO_LINE_NUMBERS}"),
    },
    ["label", "patch"],
)

MEMORY = builtin_tool(
    "memory",
    "letta_memory_core",
    "Manage memory blocks addressed by paths such as '/memories/<label>': create a block, "
    "replace text in it, insert lines into it, delete it, or rename it and change its "
    "description.",
    {
        "command": choice_param(
            ["create", "str_replace", "insert", "delete", "rename"], "The operation to run."
        ),
        "path": text_param("Path of the block (create, str_replace, insert, delete, rename)."),
        "file_text": text_param("Initial contents of the new block (create)."),
        "description": text_param("Description of the block (create, rename)."),
        "old_string": text_param("The exact text to replace (str_replace)."),
        "new_string": text_param("The replacement text (str_replace)."),
        "insert_line": integer_param("Line number at which to insert (insert)."),
        "insert_text": text_param("The text to insert (insert)."),
        "old_path": text_param("Current path of the block to rename (rename)."),
        "new_path": text_param("New path for the block (rename)."),
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

WEB_SEARCH = builtin_tool(
    "web_search",
    "letta_builtin",
    "Search the web and return the most relevant pages with their summaries.",
    {
        "query": text_param("The search query."),
        "num_results": integer_param("Number of results to return, 1 to 100. Defaults to 10."),
        "category": choice_param(WEB_SEARCH_CATEGORIES, "Restrict results to one kind of content."),
        "include_text": boolean_param(
            "Return each page's full text instead of only its summary and highlights. "
            "Defaults to false."
        ),
        "include_domains": strings_param("Only return results from these domains."),
        "exclude_domains": strings_param("Never return results from these domains."),
        "start_published_date": text_param("Only pages published after this date (ISO 8601)."),
        "end_published_date": text_param("Only pages published before this date (ISO 8601)."),
        "user_location": text_param("Two-letter country code to localize results, e.g. 'US'."),
    },
    ["query"],
)

FETCH_WEBPAGE = builtin_tool(
    "fetch_webpage",
    "letta_builtin",
    "Fetch a web page and return its content as markdown text.",
    {"url": text_param("URL of the page to fetch.")},
    ["url"],
)

RUN_CODE = builtin_tool(
    "run_code",
    "letta_builtin",
    "Run code in a sandbox and return its output, errors and tracebacks.",
    {
        "code": text_param("The code to run."),
        "language": choice_param(["python", "js", "ts", "r", "java"], "Language of the code."),
    },
    ["code", "language"],
)

RUN_CODE_WITH_TOOLS = builtin_tool(
    "run_code_with_tools",
    "letta_builtin",
    "Run Python code in a sandbox where the agent's tools can be called as functions; "
    "return its output, errors and tracebacks.",
    {"code": text_param("The Python code to run.")},
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
# What every server stores at start-up: Letta's base tools and Kelpie's own, which Letta
# clients do not know and so get only by name.
BUILTIN_TOOLS: Final[tuple[BuiltinTool, ...]] = (*BASE_TOOLS, *WORKING_MEMORY_TOOLS)


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
# letta_builtin tools get no rule. Kelpie's working-memory tools are memory tools: continue.
_EXIT_LOOP_TOOLS: Final = frozenset({"send_message", "memory_finish_edits"})
_CONTINUE_LOOP_TOOLS: Final = frozenset(
    tool.name
    for tool in BUILTIN_TOOLS
    if tool.tool_type != "letta_builtin" and tool.name not in _EXIT_LOOP_TOOLS
)


def default_tool_names(agent_type: str) -> tuple[str, ...]:
    """Tools attached at create when `include_base_tools` is true; unknown types get none."""
    return _DEFAULT_TOOLS.get(agent_type, ())


def base_tool_rules(tool_names: Sequence[str]) -> list[ToolRule]:
    """The rules Letta adds for built-in tools, in the order given; other names get no
    rule."""
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
    for tool in BUILTIN_TOOLS:
        _check_tool(tool)
    if len({tool.name for tool in BUILTIN_TOOLS}) != len(BUILTIN_TOOLS):
        raise AssertionError("built-in tool names are not unique")
    for agent_type, names in _DEFAULT_TOOLS.items():
        if not set(names) <= BASE_TOOL_NAMES:
            raise AssertionError(f"default tools of {agent_type} name an unknown tool")


_check_tables()

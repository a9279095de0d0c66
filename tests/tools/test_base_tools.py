"""The built-in tool tables: Letta's names, parameters, tool types, defaults and rules."""

from typing import Any

import pytest

from kelpie.schemas._tools import ContinueToolRule, TerminalToolRule
from kelpie.tools import (
    BASE_TOOL_NAMES,
    BASE_TOOLS,
    BASE_TOOLS_BY_NAME,
    BuiltinTool,
    base_tool_rules,
    default_tool_names,
)


def _parameters(name: str) -> dict[str, Any]:
    parameters: dict[str, Any] = BASE_TOOLS_BY_NAME[name].json_schema["parameters"]
    return parameters


def _signature(name: str) -> tuple[list[str], list[str]]:
    """(parameter names in order, required names) of a base tool."""
    parameters = _parameters(name)
    return list(parameters["properties"]), parameters["required"]


def test_base_tools_names_and_order() -> None:
    assert [tool.name for tool in BASE_TOOLS] == [
        "send_message",
        "conversation_search",
        "archival_memory_insert",
        "archival_memory_search",
        "core_memory_append",
        "core_memory_replace",
        "memory_insert",
        "memory_replace",
        "memory_rethink",
        "memory_finish_edits",
        "memory_apply_patch",
        "memory",
        "web_search",
        "fetch_webpage",
        "run_code",
        "run_code_with_tools",
    ]
    assert frozenset(tool.name for tool in BASE_TOOLS) == BASE_TOOL_NAMES
    assert set(BASE_TOOLS_BY_NAME) == BASE_TOOL_NAMES


def test_base_tools_tool_types_follow_letta() -> None:
    assert {tool.name: tool.tool_type for tool in BASE_TOOLS} == {
        "send_message": "letta_core",
        "conversation_search": "letta_core",
        "archival_memory_insert": "letta_core",
        "archival_memory_search": "letta_core",
        "core_memory_append": "letta_memory_core",
        "core_memory_replace": "letta_memory_core",
        "memory_insert": "letta_sleeptime_core",
        "memory_replace": "letta_sleeptime_core",
        "memory_rethink": "letta_sleeptime_core",
        "memory_finish_edits": "letta_sleeptime_core",
        "memory_apply_patch": "letta_memory_core",
        "memory": "letta_memory_core",
        "web_search": "letta_builtin",
        "fetch_webpage": "letta_builtin",
        "run_code": "letta_builtin",
        "run_code_with_tools": "letta_builtin",
    }


@pytest.mark.parametrize("tool", BASE_TOOLS, ids=lambda tool: tool.name)
def test_base_tools_schema_is_self_consistent(tool: BuiltinTool) -> None:
    schema = tool.json_schema
    assert set(schema) == {"name", "description", "parameters"}
    assert schema["name"] == tool.name
    assert schema["description"] == tool.description
    assert tool.description
    parameters = schema["parameters"]
    assert set(parameters) == {"type", "properties", "required"}
    assert parameters["type"] == "object"
    assert set(parameters["required"]) <= set(parameters["properties"])
    for prop in parameters["properties"].values():
        assert prop["description"]
        assert prop["type"] in {"string", "integer", "boolean", "array"}
        assert "default" not in prop


@pytest.mark.parametrize(
    ("name", "params", "required"),
    [
        ("send_message", ["message"], ["message"]),
        ("conversation_search", ["query", "roles", "limit", "start_date", "end_date"], []),
        ("archival_memory_insert", ["content", "tags"], ["content"]),
        (
            "archival_memory_search",
            ["query", "tags", "tag_match_mode", "top_k", "start_datetime", "end_datetime"],
            ["query"],
        ),
        ("core_memory_append", ["label", "content"], ["label", "content"]),
        (
            "core_memory_replace",
            ["label", "old_content", "new_content"],
            ["label", "old_content", "new_content"],
        ),
        ("memory_insert", ["label", "new_string", "insert_line"], ["label", "new_string"]),
        (
            "memory_replace",
            ["label", "old_string", "new_string"],
            ["label", "old_string", "new_string"],
        ),
        ("memory_rethink", ["label", "new_memory"], ["label", "new_memory"]),
        ("memory_finish_edits", [], []),
        ("memory_apply_patch", ["label", "patch"], ["label", "patch"]),
        (
            "memory",
            [
                "command",
                "path",
                "file_text",
                "description",
                "old_string",
                "new_string",
                "insert_line",
                "insert_text",
                "old_path",
                "new_path",
            ],
            ["command"],
        ),
        (
            "web_search",
            [
                "query",
                "num_results",
                "category",
                "include_text",
                "include_domains",
                "exclude_domains",
                "start_published_date",
                "end_published_date",
                "user_location",
            ],
            ["query"],
        ),
        ("fetch_webpage", ["url"], ["url"]),
        ("run_code", ["code", "language"], ["code", "language"]),
        ("run_code_with_tools", ["code"], ["code"]),
    ],
)
def test_base_tools_parameters_match_letta(
    name: str, params: list[str], required: list[str]
) -> None:
    assert _signature(name) == (params, required)


def test_base_tools_parameter_types_match_letta() -> None:
    props = _parameters("conversation_search")["properties"]
    assert props["roles"]["items"] == {"type": "string", "enum": ["assistant", "user", "tool"]}
    assert props["limit"]["type"] == "integer"
    props = _parameters("archival_memory_search")["properties"]
    assert props["tags"]["items"] == {"type": "string"}
    assert props["tag_match_mode"]["enum"] == ["any", "all"]
    assert props["top_k"]["type"] == "integer"
    assert _parameters("memory_insert")["properties"]["insert_line"]["type"] == "integer"
    props = _parameters("memory")["properties"]
    assert props["command"]["enum"] == ["create", "str_replace", "insert", "delete", "rename"]
    assert props["insert_line"]["type"] == "integer"
    props = _parameters("web_search")["properties"]
    assert props["num_results"]["type"] == "integer"
    assert props["include_text"]["type"] == "boolean"
    assert props["category"]["enum"][0] == "company"
    assert len(props["category"]["enum"]) == 9
    assert _parameters("run_code")["properties"]["language"]["enum"] == [
        "python",
        "js",
        "ts",
        "r",
        "java",
    ]


def test_base_tools_defaults_are_stated_in_descriptions() -> None:
    def described(tool: str, param: str) -> str:
        description: str = _parameters(tool)["properties"][param]["description"]
        return description

    assert described("conversation_search", "limit").endswith("Defaults to 5.")
    assert described("archival_memory_search", "top_k").endswith("Defaults to 10.")
    assert described("archival_memory_search", "tag_match_mode").endswith("Defaults to 'any'.")
    assert described("memory_insert", "insert_line").endswith("Defaults to -1.")
    assert described("web_search", "num_results").endswith("Defaults to 10.")
    assert described("web_search", "include_text").endswith("Defaults to false.")


@pytest.mark.parametrize(
    ("agent_type", "expected"),
    [
        ("letta_v1_agent", ("conversation_search", "memory_insert", "memory_replace")),
        (
            "memgpt_v2_agent",
            ("send_message", "conversation_search", "memory_insert", "memory_replace"),
        ),
        (
            "memgpt_agent",
            (
                "send_message",
                "conversation_search",
                "core_memory_append",
                "core_memory_replace",
                "memory",
                "memory_apply_patch",
            ),
        ),
        (
            "sleeptime_agent",
            ("memory_replace", "memory_insert", "memory_rethink", "memory_finish_edits"),
        ),
        ("react_agent", ()),
        ("workflow_agent", ()),
        ("voice_convo_agent", ()),
        ("no_such_agent", ()),
    ],
)
def test_default_tool_names_per_agent_type(agent_type: str, expected: tuple[str, ...]) -> None:
    assert default_tool_names(agent_type) == expected


def test_base_tool_rules_exit_for_terminal_tools_and_continue_for_the_rest() -> None:
    rules = base_tool_rules(default_tool_names("sleeptime_agent"))
    assert rules == [
        ContinueToolRule(tool_name="memory_replace"),
        ContinueToolRule(tool_name="memory_insert"),
        ContinueToolRule(tool_name="memory_rethink"),
        TerminalToolRule(tool_name="memory_finish_edits"),
    ]
    assert [rule.type for rule in rules] == [
        "continue_loop",
        "continue_loop",
        "continue_loop",
        "exit_loop",
    ]


def test_base_tool_rules_send_message_exits_loop() -> None:
    assert base_tool_rules(["send_message", "conversation_search"]) == [
        TerminalToolRule(tool_name="send_message"),
        ContinueToolRule(tool_name="conversation_search"),
    ]


def test_base_tool_rules_skip_builtins_unknown_names_and_duplicates() -> None:
    names = ["web_search", "my_custom_tool", "memory", "run_code", "memory", "fetch_webpage"]
    assert base_tool_rules(names) == [ContinueToolRule(tool_name="memory")]
    assert base_tool_rules([]) == []


def test_base_tool_rules_cover_every_non_builtin_base_tool() -> None:
    names = [tool.name for tool in BASE_TOOLS]
    ruled = {rule.tool_name: rule.type for rule in base_tool_rules(names)}
    non_builtin = {tool.name for tool in BASE_TOOLS if tool.tool_type != "letta_builtin"}
    assert set(ruled) == non_builtin
    assert {name for name, kind in ruled.items() if kind == "exit_loop"} == {
        "send_message",
        "memory_finish_edits",
    }

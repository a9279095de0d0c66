"""The working-memory tools as data and the checking of their calls: schemas, tool types,
rules, and the error texts the model gets for bad arguments."""

from typing import Any

import pytest

from kelpie.schemas import (
    WORKING_MEMORY_KEY_CHARS_MAX,
    WORKING_MEMORY_TTL_S_MAX,
    WORKING_MEMORY_VALUE_BYTES_MAX,
)
from kelpie.schemas._tools import ContinueToolRule
from kelpie.tools import (
    BASE_TOOLS,
    BUILTIN_TOOLS,
    WORKING_MEMORY_TOOL_NAMES,
    WORKING_MEMORY_TOOLS,
    WorkingMemoryCall,
    base_tool_rules,
    default_tool_names,
    parse_working_memory_call,
)

AGENT_TYPES = ("letta_v1_agent", "memgpt_agent", "memgpt_v2_agent", "sleeptime_agent")


def test_working_memory_tools_are_built_in_but_no_base_tool() -> None:
    names = [tool.name for tool in WORKING_MEMORY_TOOLS]
    assert names == [
        "working_memory_set",
        "working_memory_get",
        "working_memory_delete",
        "working_memory_list",
    ]
    assert frozenset(names) == WORKING_MEMORY_TOOL_NAMES
    assert BUILTIN_TOOLS == (*BASE_TOOLS, *WORKING_MEMORY_TOOLS)
    assert {tool.tool_type for tool in WORKING_MEMORY_TOOLS} == {"letta_memory_core"}


@pytest.mark.parametrize("agent_type", AGENT_TYPES)
def test_no_agent_type_gets_working_memory_tools_by_default(agent_type: str) -> None:
    assert not WORKING_MEMORY_TOOL_NAMES & set(default_tool_names(agent_type))


def test_working_memory_tools_get_the_continue_rule() -> None:
    rules = base_tool_rules(sorted(WORKING_MEMORY_TOOL_NAMES))
    assert rules == [ContinueToolRule(tool_name=name) for name in sorted(WORKING_MEMORY_TOOL_NAMES)]


def test_set_schema_requires_key_and_value() -> None:
    parameters = WORKING_MEMORY_TOOLS[0].json_schema["parameters"]
    assert list(parameters["properties"]) == ["key", "value", "ttl_s"]
    assert parameters["required"] == ["key", "value"]
    # Any JSON type: the value's schema names none.
    assert "type" not in parameters["properties"]["value"]


def test_set_call_is_checked_into_its_arguments() -> None:
    call = parse_working_memory_call(
        "working_memory_set", {"key": "task:1", "value": {"a": 1}, "ttl_s": 60}
    )
    assert call == WorkingMemoryCall("working_memory_set", key="task:1", value={"a": 1}, ttl_s=60)


def test_list_without_prefix_lists_everything() -> None:
    assert parse_working_memory_call("working_memory_list", {}) == WorkingMemoryCall(
        "working_memory_list", prefix=""
    )


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("working_memory_set", {"key": "k"}, "missing required arguments: value"),
    ("working_memory_set", {"value": 1}, "missing required arguments: key"),
    ("working_memory_set", {"key": "k", "value": None}, "missing required arguments: value"),
    ("working_memory_get", {"key": "k", "label": "x"}, "unexpected arguments: label"),
    ("working_memory_get", {"key": "has space"}, "key must be 1 to"),
    ("working_memory_get", {"key": 5}, "key must be a string, not int"),
    ("working_memory_delete", {"key": "x" * (WORKING_MEMORY_KEY_CHARS_MAX + 1)}, "key must be"),
    ("working_memory_list", {"prefix": "a/b"}, "prefix must be"),
    ("working_memory_set", {"key": "k", "value": 1, "ttl_s": 0}, "ttl_s must be between 1"),
    (
        "working_memory_set",
        {"key": "k", "value": 1, "ttl_s": WORKING_MEMORY_TTL_S_MAX + 1},
        "ttl_s must be between 1",
    ),
    ("working_memory_set", {"key": "k", "value": 1, "ttl_s": 1.5}, "whole number"),
    ("working_memory_set", {"key": "k", "value": 1, "ttl_s": True}, "whole number"),
    ("working_memory_set", {"key": "k", "value": float("nan")}, "not storable JSON"),
    (
        "working_memory_set",
        {"key": "k", "value": "x" * WORKING_MEMORY_VALUE_BYTES_MAX},
        f"the limit is {WORKING_MEMORY_VALUE_BYTES_MAX}",
    ),
]


@pytest.mark.parametrize(("name", "arguments", "text"), BAD_CALLS)
def test_bad_call_is_an_error_text_naming_the_problem(
    name: str, arguments: dict[str, Any], text: str
) -> None:
    result = parse_working_memory_call(name, arguments)
    assert isinstance(result, str), result
    assert result.startswith(f"{name}")
    assert text in result

"""The core-memory tools: Letta's return values and exact error texts, limits, read-only
blocks, line-number guards, insert positions and argument checking."""

from typing import Any, Final

import pytest

from kelpie.tools import (
    BASE_TOOLS_BY_NAME,
    MEMORY_TOOL_NAMES,
    MemoryBlock,
    MemoryEdit,
    run_memory_tool,
)

HUMAN: Final = "Name: Ann\nLikes: tea\nCity: Oslo"
READ_ONLY: Final = "Error This block is read-only and cannot be edited."
WARNING: Final = (
    "# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. "
    "Do NOT include line number prefixes in your memory edit tool calls."
)
PREFIX_TAIL: Final = (
    "contains a line number prefix, which is not allowed. Do not include line numbers when "
    "calling memory tools (line numbers are for display purposes only)."
)
WARNING_TAIL: Final = (
    "contains a line number warning, which is not allowed. Do not include line number "
    "information when calling memory tools (line numbers are for display purposes only)."
)
MISSING_NOTES: Final = "'Block field notes does not exist (available sections = human, persona)'"


def _blocks(human: str = HUMAN, limit: int = 100) -> dict[str, MemoryBlock]:
    return {
        "human": MemoryBlock("human", human, limit, description="About the user."),
        "persona": MemoryBlock("persona", "I am Sam.", 100, read_only=True),
    }


def _run(name: str, blocks: dict[str, MemoryBlock] | None = None, **arguments: Any) -> MemoryEdit:
    return run_memory_tool(name, arguments, _blocks() if blocks is None else blocks)


def _ok(edit: MemoryEdit, value: str, label: str = "human") -> None:
    """The call succeeded, returned the block's new value and changed only that block."""
    assert edit == MemoryEdit(returned=value, error=None, changed={label: value})


def _failed(edit: MemoryEdit, text: str) -> None:
    assert edit == MemoryEdit(returned=None, error=text)


# --- the tool set ------------------------------------------------------------------------


def test_memory_tool_names_are_the_memory_base_tools() -> None:
    assert {
        "core_memory_append",
        "core_memory_replace",
        "memory_insert",
        "memory_replace",
        "memory_rethink",
        "memory_finish_edits",
        "memory",
        "memory_apply_patch",
    } == MEMORY_TOOL_NAMES


@pytest.mark.parametrize("name", sorted(MEMORY_TOOL_NAMES))
def test_memory_tool_parameters_match_its_schema(name: str) -> None:
    parameters = BASE_TOOLS_BY_NAME[name].json_schema["parameters"]
    everything = run_memory_tool(name, dict.fromkeys(parameters["properties"]), _blocks())
    assert everything.error is None or "unexpected keyword" not in everything.error
    nothing = run_memory_tool(name, {}, _blocks())
    required = parameters["required"]
    if required:
        assert nothing.error is not None
        assert f"missing {len(required)} required" in nothing.error
        assert all(f"'{param}'" in nothing.error for param in required)
    else:
        assert nothing.error is None
    extra = run_memory_tool(name, {"bogus": 1}, _blocks())
    assert (
        extra.error == f"LettaCoreToolExecutor.{name}() got an unexpected keyword argument 'bogus'"
    )


def test_memory_unknown_tool_raises_key_error() -> None:
    with pytest.raises(KeyError):
        run_memory_tool("send_message", {"message": "hi"}, _blocks())


def test_memory_tool_does_not_touch_its_inputs() -> None:
    blocks = _blocks()
    arguments = {"label": "human", "content": "x"}
    run_memory_tool("core_memory_append", arguments, blocks)
    assert blocks == _blocks()
    assert arguments == {"label": "human", "content": "x"}


# --- arguments -----------------------------------------------------------------------------


def test_memory_arguments_missing_one() -> None:
    _failed(
        _run("memory_replace", label="human", old_string="tea"),
        "LettaCoreToolExecutor.memory_replace() missing 1 required positional argument: "
        "'new_string'",
    )


def test_memory_arguments_missing_two_and_three() -> None:
    _failed(
        _run("core_memory_replace", label="human"),
        "LettaCoreToolExecutor.core_memory_replace() missing 2 required positional arguments: "
        "'old_content' and 'new_content'",
    )
    _failed(
        _run("core_memory_replace"),
        "LettaCoreToolExecutor.core_memory_replace() missing 3 required positional arguments: "
        "'label', 'old_content', and 'new_content'",
    )


def test_memory_arguments_unexpected_comes_before_missing() -> None:
    _failed(
        _run("memory_finish_edits", label="human"),
        "LettaCoreToolExecutor.memory_finish_edits() got an unexpected keyword argument 'label'",
    )
    _failed(
        _run("memory_rethink", label="human", new_value="x"),
        "LettaCoreToolExecutor.memory_rethink() got an unexpected keyword argument 'new_value'",
    )


def test_memory_arguments_wrong_types() -> None:
    _failed(
        _run("memory_insert", label="human", new_string="x", insert_line="2"),
        "LettaCoreToolExecutor.memory_insert() argument 'insert_line' must be int, not str",
    )
    _failed(
        _run("memory_insert", label="human", new_string="x", insert_line=True),
        "LettaCoreToolExecutor.memory_insert() argument 'insert_line' must be int, not bool",
    )
    _failed(
        _run("core_memory_append", label="human", content=None),
        "LettaCoreToolExecutor.core_memory_append() argument 'content' must be str, not NoneType",
    )
    _failed(
        _run("memory", command="create", path=["/memories/x"]),
        "LettaCoreToolExecutor.memory() argument 'path' must be str, not list",
    )


def test_memory_arguments_optional_null_means_default() -> None:
    _ok(_run("memory_insert", label="human", new_string="x", insert_line=None), HUMAN + "\nx")


# --- core_memory_append / core_memory_replace ----------------------------------------------


def test_core_memory_append_adds_a_new_line() -> None:
    _ok(_run("core_memory_append", label="human", content="Pet: cat"), HUMAN + "\nPet: cat")


def test_core_memory_append_unknown_label() -> None:
    _failed(_run("core_memory_append", label="notes", content="x"), MISSING_NOTES)


def test_core_memory_append_read_only() -> None:
    _failed(_run("core_memory_append", label="persona", content="x"), READ_ONLY)


def test_core_memory_append_over_limit() -> None:
    _failed(
        _run(
            "core_memory_append", _blocks(human="12345", limit=10), label="human", content="67890"
        ),
        "Edit failed: Exceeds 10 character limit (requested 11)",
    )


def test_core_memory_append_up_to_limit() -> None:
    blocks = _blocks(human="12345", limit=10)
    _ok(_run("core_memory_append", blocks, label="human", content="6789"), "12345\n6789")


def test_core_memory_replace_replaces_every_occurrence() -> None:
    blocks = _blocks(human="a-b-a")
    _ok(
        _run("core_memory_replace", blocks, label="human", old_content="a", new_content="c"),
        "c-b-c",
    )


def test_core_memory_replace_empty_new_content_deletes() -> None:
    edit = _run("core_memory_replace", label="human", old_content="\nCity: Oslo", new_content="")
    _ok(edit, "Name: Ann\nLikes: tea")


def test_core_memory_replace_not_found() -> None:
    _failed(
        _run("core_memory_replace", label="human", old_content="coffee", new_content="x"),
        "Old content 'coffee' not found in memory block 'human'",
    )


def test_core_memory_replace_read_only_and_unknown_label() -> None:
    _failed(
        _run("core_memory_replace", label="persona", old_content="Sam", new_content="Al"),
        READ_ONLY,
    )
    _failed(
        _run("core_memory_replace", label="notes", old_content="a", new_content="b"), MISSING_NOTES
    )


def test_core_memory_replace_over_limit() -> None:
    edit = _run("core_memory_replace", label="human", old_content="tea", new_content="t" * 73)
    _failed(edit, "Edit failed: Exceeds 100 character limit (requested 101)")


# --- memory_replace --------------------------------------------------------------------------


def test_memory_replace_returns_the_new_value() -> None:
    edit = _run("memory_replace", label="human", old_string="tea", new_string="coffee")
    _ok(edit, "Name: Ann\nLikes: coffee\nCity: Oslo")


def test_memory_replace_not_found() -> None:
    _failed(
        _run("memory_replace", label="human", old_string="coffee", new_string="x"),
        "No replacement was performed, old_string `coffee` did not appear verbatim in memory "
        "block with label `human`.",
    )


def test_memory_replace_multiple_occurrences_lists_lines() -> None:
    _failed(
        _run("memory_replace", label="human", old_string="a", new_string="x"),
        "No replacement was performed. Multiple occurrences of old_string `a` in lines [1, 2]. "
        "Please ensure it is unique.",
    )


def test_memory_replace_multiple_occurrences_on_one_line() -> None:
    _failed(
        _run(
            "memory_replace",
            _blocks(human="x\nab ab"),
            label="human",
            old_string="ab",
            new_string="c",
        ),
        "No replacement was performed. Multiple occurrences of old_string `ab` in lines [2]. "
        "Please ensure it is unique.",
    )


def test_memory_replace_read_only_and_unknown_label() -> None:
    _failed(_run("memory_replace", label="persona", old_string="Sam", new_string="Al"), READ_ONLY)
    _failed(_run("memory_replace", label="notes", old_string="a", new_string="b"), MISSING_NOTES)


def test_memory_replace_rejects_line_number_prefixes() -> None:
    _failed(
        _run("memory_replace", label="human", old_string="2→ Likes: tea", new_string="x"),
        f"old_string {PREFIX_TAIL}",
    )
    _failed(
        _run("memory_replace", label="human", old_string="tea", new_string="x\n  12→ y"),
        f"new_string {PREFIX_TAIL}",
    )


def test_memory_replace_rejects_the_warning_banner_in_old_string_only() -> None:
    _failed(
        _run("memory_replace", label="human", old_string=f"{WARNING}\ntea", new_string="x"),
        f"old_string {WARNING_TAIL}",
    )
    edit = _run(
        "memory_replace", _blocks(limit=500), label="human", old_string="tea", new_string=WARNING
    )
    _ok(edit, HUMAN.replace("tea", WARNING))


def test_memory_replace_arrow_inside_a_line_is_allowed() -> None:
    edit = _run("memory_replace", label="human", old_string="tea", new_string="tea 2→ coffee")
    _ok(edit, "Name: Ann\nLikes: tea 2→ coffee\nCity: Oslo")


def test_memory_replace_expands_tabs() -> None:
    edit = _run(
        "memory_replace", _blocks(human="a\tb\nc"), label="human", old_string="c", new_string="d"
    )
    _ok(edit, "a       b\nd")


def test_memory_replace_over_limit() -> None:
    edit = _run("memory_replace", label="human", old_string="tea", new_string="t" * 73)
    _failed(edit, "Edit failed: Exceeds 100 character limit (requested 101)")


# --- memory_insert ---------------------------------------------------------------------------


def test_memory_insert_defaults_to_the_end() -> None:
    _ok(_run("memory_insert", label="human", new_string="Pet: cat"), HUMAN + "\nPet: cat")
    edit = _run("memory_insert", label="human", new_string="Pet: cat", insert_line=-1)
    _ok(edit, HUMAN + "\nPet: cat")


def test_memory_insert_zero_is_the_top() -> None:
    edit = _run("memory_insert", label="human", new_string="# User", insert_line=0)
    _ok(edit, "# User\n" + HUMAN)


def test_memory_insert_after_a_line() -> None:
    edit = _run("memory_insert", label="human", new_string="Pet: cat\nAge: 30", insert_line=1)
    _ok(edit, "Name: Ann\nPet: cat\nAge: 30\nLikes: tea\nCity: Oslo")
    _ok(_run("memory_insert", label="human", new_string="x", insert_line=3), HUMAN + "\nx")


def test_memory_insert_into_an_empty_block() -> None:
    _ok(_run("memory_insert", _blocks(human=""), label="human", new_string="x"), "\nx")
    _ok(
        _run("memory_insert", _blocks(human=""), label="human", new_string="x", insert_line=0),
        "x\n",
    )


def test_memory_insert_out_of_range() -> None:
    for line in (4, -2):
        _failed(
            _run("memory_insert", label="human", new_string="x", insert_line=line),
            f"Invalid `insert_line` parameter: {line}. It should be within the range of lines "
            "of the memory block: [0, 3], or -1 to append to the end of the memory block.",
        )


def test_memory_insert_rejects_line_numbers() -> None:
    _failed(_run("memory_insert", label="human", new_string="4→ x"), f"new_string {PREFIX_TAIL}")
    _failed(_run("memory_insert", label="human", new_string=WARNING), f"new_string {WARNING_TAIL}")


def test_memory_insert_read_only_unknown_label_and_limit() -> None:
    _failed(_run("memory_insert", label="persona", new_string="x"), READ_ONLY)
    _failed(_run("memory_insert", label="notes", new_string="x"), MISSING_NOTES)
    _failed(
        _run("memory_insert", label="human", new_string="x" * 69),
        "Edit failed: Exceeds 100 character limit (requested 101)",
    )


# --- memory_rethink / memory_finish_edits ---------------------------------------------------


def test_memory_rethink_rewrites_the_block() -> None:
    _ok(_run("memory_rethink", label="human", new_memory="Ann, tea, Oslo."), "Ann, tea, Oslo.")


def test_memory_rethink_creates_a_missing_block() -> None:
    edit = _run("memory_rethink", label="notes", new_memory="First note.")
    assert edit == MemoryEdit(
        returned="First note.", error=None, created={"notes": ("First note.", None)}
    )


def test_memory_rethink_created_block_gets_the_default_limit() -> None:
    edit = _run("memory_rethink", label="notes", new_memory="x" * 100_001)
    _failed(edit, "Edit failed: Exceeds 100000 character limit (requested 100001)")


def test_memory_rethink_errors() -> None:
    _failed(_run("memory_rethink", label="persona", new_memory="x"), READ_ONLY)
    _failed(_run("memory_rethink", label="human", new_memory="1→ x"), f"new_memory {PREFIX_TAIL}")
    _failed(_run("memory_rethink", label="human", new_memory=WARNING), f"new_memory {WARNING_TAIL}")
    _failed(
        _run("memory_rethink", label="human", new_memory="x" * 101),
        "Edit failed: Exceeds 100 character limit (requested 101)",
    )
    _failed(
        _run("memory_rethink", label="", new_memory="x"),
        "Error: Invalid memory block label '': a label must be 1 to 100 characters long",
    )


def test_memory_rethink_same_value_changes_nothing() -> None:
    edit = _run("memory_rethink", label="human", new_memory=HUMAN)
    assert edit == MemoryEdit(returned=HUMAN, error=None)


def test_memory_finish_edits_returns_none() -> None:
    assert _run("memory_finish_edits") == MemoryEdit(returned=None, error=None)

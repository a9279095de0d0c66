"""The omni `memory` tool: create, str_replace, insert, delete and rename on
`/memories/<label>` paths, with Letta's return and error texts."""

from typing import Any, Final

import pytest

from kelpie.tools import MemoryBlock, MemoryEdit, run_memory_tool

HUMAN: Final = "Name: Ann\nLikes: tea"
RECOMPILED: Final = "Your system prompt has been recompiled"
READ_ONLY: Final = "Error This block is read-only and cannot be edited."
MISSING_NOTES: Final = "'Block field notes does not exist (available sections = human, persona)'"


def _blocks() -> dict[str, MemoryBlock]:
    return {
        "human": MemoryBlock("human", HUMAN, 100, description="About the user."),
        "persona": MemoryBlock("persona", "I am Sam.", 100, read_only=True),
    }


def _memory(**arguments: Any) -> MemoryEdit:
    return run_memory_tool("memory", arguments, _blocks())


def _failed(edit: MemoryEdit, text: str) -> None:
    assert edit == MemoryEdit(returned=None, error=text)


# --- create ------------------------------------------------------------------------------


def test_memory_create_makes_a_block() -> None:
    edit = _memory(
        command="create", path="/memories/notes", description="Notes.", file_text="First."
    )
    assert edit == MemoryEdit(
        returned=f"Successfully created memory block 'notes'. {RECOMPILED} with the new memory "
        "block and is now active in your context.",
        error=None,
        created={"notes": ("First.", "Notes.")},
    )


def test_memory_create_without_text_is_empty() -> None:
    edit = _memory(command="create", path="/memories/notes", description="")
    assert edit.created == {"notes": ("", "")}


def test_memory_create_path_forms() -> None:
    for path, label in [("notes", "notes"), ("/notes", "notes"), ("/memories/a/b", "a/b")]:
        edit = _memory(command="create", path=path, description="d")
        assert list(edit.created) == [label]


def test_memory_create_requires_path_and_description() -> None:
    _failed(
        _memory(command="create", description="d"), "Error: path is required for create command"
    )
    _failed(
        _memory(command="create", path="/memories/notes"),
        "Error: description is required for create command",
    )


def test_memory_create_existing_label() -> None:
    _failed(
        _memory(command="create", path="/memories/human", description="d"),
        "Error: Memory block 'human' already exists",
    )


def test_memory_create_over_the_default_limit() -> None:
    edit = _memory(command="create", path="/memories/n", description="d", file_text="x" * 100_001)
    _failed(edit, "Edit failed: Exceeds 100000 character limit (requested 100001)")


def test_memory_create_bad_label() -> None:
    _failed(
        _memory(command="create", path="/memories/", description="d"),
        "Error: Invalid memory block label '': a label must be 1 to 100 characters long",
    )


# --- str_replace -----------------------------------------------------------------------------


def test_memory_str_replace_returns_the_new_value() -> None:
    edit = _memory(
        command="str_replace", path="/memories/human", old_string="tea", new_string="coffee"
    )
    assert edit == MemoryEdit(
        returned="Name: Ann\nLikes: coffee",
        error=None,
        changed={"human": "Name: Ann\nLikes: coffee"},
    )


def test_memory_str_replace_requires_its_arguments() -> None:
    _failed(
        _memory(command="str_replace", old_string="a", new_string="b"),
        "Error: path is required for str_replace command",
    )
    _failed(
        _memory(command="str_replace", path="/memories/human", new_string="b"),
        "Error: old_string is required for str_replace command",
    )
    _failed(
        _memory(command="str_replace", path="/memories/human", old_string="a"),
        "Error: new_string is required for str_replace command",
    )


def test_memory_str_replace_errors_as_memory_replace() -> None:
    _failed(
        _memory(command="str_replace", path="/memories/human", old_string="x", new_string="y"),
        "No replacement was performed, old_string `x` did not appear verbatim in memory block "
        "with label `human`.",
    )
    _failed(
        _memory(command="str_replace", path="/memories/human", old_string="a", new_string="y"),
        "No replacement was performed. Multiple occurrences of old_string `a` in lines [1, 2]. "
        "Please ensure it is unique.",
    )
    _failed(
        _memory(command="str_replace", path="/memories/persona", old_string="Sam", new_string="Al"),
        READ_ONLY,
    )
    _failed(
        _memory(command="str_replace", path="/memories/notes", old_string="a", new_string="b"),
        MISSING_NOTES,
    )
    _failed(
        _memory(
            command="str_replace", path="/memories/human", old_string="1→ Name", new_string="b"
        ),
        "old_string contains a line number prefix, which is not allowed. Do not include line "
        "numbers when calling memory tools (line numbers are for display purposes only).",
    )


# --- insert ------------------------------------------------------------------------------------


def test_memory_insert_command_at_a_line() -> None:
    edit = _memory(command="insert", path="/memories/human", insert_line=1, insert_text="Age: 30")
    assert edit.returned == "Name: Ann\nAge: 30\nLikes: tea"
    assert edit.changed == {"human": "Name: Ann\nAge: 30\nLikes: tea"}


def test_memory_insert_command_without_line_appends() -> None:
    edit = _memory(command="insert", path="/memories/human", insert_text="Age: 30")
    assert edit.returned == "Name: Ann\nLikes: tea\nAge: 30"


def test_memory_insert_command_errors() -> None:
    _failed(
        _memory(command="insert", insert_text="x"), "Error: path is required for insert command"
    )
    _failed(
        _memory(command="insert", path="/memories/human"),
        "Error: insert_text is required for insert command",
    )
    _failed(
        _memory(command="insert", path="/memories/human", insert_text="x", insert_line=5),
        "Invalid `insert_line` parameter: 5. It should be within the range of lines of the "
        "memory block: [0, 2], or -1 to append to the end of the memory block.",
    )
    _failed(
        _memory(command="insert", path="/memories/human", insert_text="3→ x"),
        "insert_text contains a line number prefix, which is not allowed. Do not include line "
        "numbers when calling memory tools (line numbers are for display purposes only).",
    )
    _failed(_memory(command="insert", path="/memories/persona", insert_text="x"), READ_ONLY)


# --- delete ------------------------------------------------------------------------------------


def test_memory_delete_removes_the_block() -> None:
    edit = _memory(command="delete", path="/memories/human")
    assert edit == MemoryEdit(
        returned=f"Successfully deleted memory block 'human'. {RECOMPILED} without this memory "
        "block and is now active in your context.",
        error=None,
        deleted=("human",),
    )


def test_memory_delete_errors() -> None:
    _failed(_memory(command="delete"), "Error: path is required for delete command")
    _failed(
        _memory(command="delete", path="/memories/notes"),
        f"Error performing delete: {MISSING_NOTES}",
    )


# --- rename --------------------------------------------------------------------------------------


def test_memory_rename_relabels_the_block() -> None:
    edit = _memory(command="rename", old_path="/memories/human", new_path="/memories/user")
    assert edit == MemoryEdit(
        returned=f"Successfully renamed memory block 'human' to 'user'. {RECOMPILED} with the "
        "renamed memory block and is now active in your context.",
        error=None,
        renamed={"human": "user"},
    )


def test_memory_rename_to_itself_changes_nothing() -> None:
    edit = _memory(command="rename", old_path="/memories/human", new_path="/memories/human")
    assert edit.error is None
    assert edit == MemoryEdit(returned=edit.returned, error=None)


def test_memory_rename_with_description_updates_it() -> None:
    edit = _memory(command="rename", path="/memories/human", description="The user.")
    assert edit == MemoryEdit(
        returned=f"Successfully updated description of memory block 'human'. {RECOMPILED} with "
        "the updated description and is now active in your context.",
        error=None,
        described={"human": "The user."},
    )


def test_memory_rename_errors() -> None:
    _failed(
        _memory(command="rename", old_path="/memories/notes", new_path="/memories/x"),
        f"Error performing rename: {MISSING_NOTES}",
    )
    _failed(
        _memory(command="rename", old_path="/memories/human", new_path="/memories/persona"),
        "Error performing rename: Error: Memory block 'persona' already exists",
    )
    _failed(
        _memory(command="rename", path="/memories/notes", description="d"),
        f"Error performing update_description: {MISSING_NOTES}",
    )


@pytest.mark.parametrize(
    "arguments",
    [{}, {"path": "/memories/human"}, {"path": "/memories/human", "description": ""}],
)
def test_memory_rename_needs_a_pair_of_arguments(arguments: dict[str, str]) -> None:
    _failed(
        _memory(command="rename", **arguments),
        "Error: path and description are required for update_description command, or "
        "old_path and new_path are required for rename command",
    )


# --- commands ------------------------------------------------------------------------------------


def test_memory_unknown_command() -> None:
    _failed(
        _memory(command="view", path="/memories/human"),
        "Error: Unknown command 'view'. Supported commands: create, str_replace, insert, "
        "delete, rename",
    )


def test_memory_requires_a_command() -> None:
    _failed(
        run_memory_tool("memory", {}, _blocks()),
        "LettaCoreToolExecutor.memory() missing 1 required positional argument: 'command'",
    )


def test_memory_delete_and_rename_do_not_check_read_only() -> None:
    # As in Letta: only value edits check read_only; delete and rename detach or relabel.
    assert _memory(command="delete", path="/memories/persona").deleted == ("persona",)
    edit = _memory(command="rename", old_path="/memories/persona", new_path="/memories/me")
    assert edit.renamed == {"persona": "me"}

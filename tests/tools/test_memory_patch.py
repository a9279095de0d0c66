"""memory_apply_patch: single-block unified diffs and the multi-block `*** Add Block` /
`*** Delete Block` / `*** Update Block` / `*** Move to` mode."""

from typing import Final

from kelpie.tools import MemoryBlock, MemoryEdit, run_memory_tool

HUMAN: Final = "Name: Ann\nLikes: tea\nCity: Oslo"
SUCCESS: Final = (
    "Successfully applied memory patch operations. Your system prompt has been recompiled "
    "with the updated memory contents and is now active in your context.\n\n"
    "Operations completed:\n- "
)
READ_ONLY: Final = "Error This block is read-only and cannot be edited."
NOT_FOUND: Final = (
    "Failed to apply patch: expected hunk context not found in the memory block. Verify the "
    "target lines exist and try providing more context. Expected start:\n"
)


def _blocks(human: str = HUMAN) -> dict[str, MemoryBlock]:
    return {
        "human": MemoryBlock("human", human, 100, description="About the user."),
        "persona": MemoryBlock("persona", "I am Sam.", 100, read_only=True),
        "notes": MemoryBlock("notes", "a\nb", 100),
    }


def _patch(patch: str, label: str = "", human: str = HUMAN) -> MemoryEdit:
    return run_memory_tool("memory_apply_patch", {"label": label, "patch": patch}, _blocks(human))


def _failed(edit: MemoryEdit, text: str) -> None:
    assert edit == MemoryEdit(returned=None, error=text)


# --- single-block mode -------------------------------------------------------------------


def test_memory_patch_single_block_returns_the_new_value() -> None:
    edit = _patch(" Name: Ann\n-Likes: tea\n+Likes: coffee\n+Pet: cat", label="human")
    value = "Name: Ann\nLikes: coffee\nPet: cat\nCity: Oslo"
    assert edit == MemoryEdit(returned=value, error=None, changed={"human": value})


def test_memory_patch_ignores_diff_headers_and_splits_hunks() -> None:
    patch = "--- a/human\n+++ b/human\n@@ -1 +1 @@\n-Name: Ann\n+Name: Anna\n@@\n-City: Oslo"
    edit = _patch(patch, label="human")
    assert edit.returned == "Name: Anna\nLikes: tea"


def test_memory_patch_blank_line_is_empty_context() -> None:
    edit = _patch("\n-b\n+c", label="human", human="a\n\nb")
    assert edit.returned == "a\n\nc"


def test_memory_patch_only_additions_append() -> None:
    edit = _patch("+Pet: cat", label="human")
    assert edit.returned == HUMAN + "\nPet: cat"


def test_memory_patch_expands_tabs_after_the_marker() -> None:
    edit = _patch("-a\tb\n+c\td", label="human", human="a\tb\ne")
    assert edit.returned == "c       d\ne"
    added = _patch("*** Add Block: t\n+x\ty")
    assert added.created == {"t": ("x       y", "")}


def test_memory_patch_context_mismatch() -> None:
    patch = " Name: Bob\n-Likes: tea\n+x\n Line 3\n Line 4\n Line 5"
    _failed(_patch(patch, label="human"), NOT_FOUND + "Name: Bob\nLikes: tea\nLine 3\nLine 4")


def test_memory_patch_ambiguous_context() -> None:
    _failed(
        _patch("-x\n+y", label="human", human="x\nz\nx"),
        "Failed to apply patch: hunk context matched multiple places in the memory block. "
        "Please add more unique surrounding context to disambiguate.",
    )


def test_memory_patch_without_hunks() -> None:
    _failed(
        _patch("just some words", label="human"),
        "No applicable hunks found in patch. Ensure lines start with ' ', '-', or '+'.",
    )


def test_memory_patch_single_block_errors() -> None:
    _failed(_patch("+x", label="missing"), "Error: Memory block 'missing' does not exist")
    _failed(_patch("+x", label=""), "Error: Memory block '' does not exist")
    _failed(_patch("+x", label="persona"), READ_ONLY)
    _failed(
        _patch("+" + "x" * 69, label="human"),
        "Edit failed: Exceeds 100 character limit (requested 101)",
    )


def test_memory_patch_rejects_line_numbers_and_the_banner() -> None:
    _failed(
        _patch(" 1→ Name: Ann\n+x", label="human"),
        "Patch contains a line number prefix, which is not allowed. Do not include line numbers "
        "(they are for display only).",
    )
    banner = (
        "# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. "
        "Do NOT include line number prefixes in your memory edit tool calls."
    )
    _failed(
        _patch(f"{banner}\n+x", label="human"),
        "Patch contains the line number warning banner, which is not allowed. Provide only the "
        "text to edit.",
    )


# --- multi-block mode ----------------------------------------------------------------------


def test_memory_patch_add_block() -> None:
    patch = (
        "*** Begin Patch\n*** Add Block: todo\nDescription: Things to do.\n"
        "+buy milk\n\n+call Bo\n\n*** End Patch"
    )
    edit = _patch(patch)
    assert edit == MemoryEdit(
        returned=SUCCESS + "Created memory block 'todo'",
        error=None,
        created={"todo": ("buy milk\n\ncall Bo", "Things to do.")},
    )


def test_memory_patch_add_block_without_description() -> None:
    assert _patch("*** Add Block: todo\n+x").created == {"todo": ("x", "")}


def test_memory_patch_delete_block() -> None:
    edit = _patch("*** Begin Patch\n*** Delete Block: notes\n*** End Patch")
    assert edit == MemoryEdit(
        returned=SUCCESS + "Deleted memory block 'notes'", error=None, deleted=("notes",)
    )


def test_memory_patch_update_block() -> None:
    edit = _patch("*** Update Block: notes\n@@\n a\n-b\n+c")
    assert edit == MemoryEdit(
        returned=SUCCESS + "Updated memory block 'notes'", error=None, changed={"notes": "a\nc"}
    )


def test_memory_patch_update_then_move() -> None:
    edit = _patch("*** Update Block: human\n*** Move to: user\n-Likes: tea\n+Likes: coffee")
    assert edit == MemoryEdit(
        returned=SUCCESS + "Updated memory block 'human'\n- Renamed memory block 'human' to 'user'",
        error=None,
        changed={"human": "Name: Ann\nLikes: coffee\nCity: Oslo"},
        renamed={"human": "user"},
    )


def test_memory_patch_move_alone_renames() -> None:
    edit = _patch("*** Update Block: notes\n*** Move to: scratch")
    assert edit == MemoryEdit(
        returned=SUCCESS + "Renamed memory block 'notes' to 'scratch'",
        error=None,
        renamed={"notes": "scratch"},
    )


def test_memory_patch_add_then_move_creates_under_the_new_label() -> None:
    edit = _patch("*** Add Block: a1\n*** Move to: a2\n+x")
    assert edit.created == {"a2": ("x", "")}
    assert edit.renamed == {}


def test_memory_patch_several_operations_net_changes() -> None:
    patch = "\n".join(
        [
            "*** Begin Patch",
            "*** Delete Block: notes",
            "*** Update Block: human",
            "*** Move to: notes",
            "-City: Oslo",
            "*** Add Block: human",
            "+new human",
            "*** End Patch",
        ]
    )
    edit = _patch(patch)
    assert edit == MemoryEdit(
        returned=SUCCESS
        + "Deleted memory block 'notes'\n- Updated memory block 'human'\n"
        + "- Renamed memory block 'human' to 'notes'\n- Created memory block 'human'",
        error=None,
        changed={"human": "Name: Ann\nLikes: tea"},
        created={"human": ("new human", "")},
        deleted=("notes",),
        renamed={"human": "notes"},
    )


def test_memory_patch_swap_labels() -> None:
    patch = "\n".join(
        [
            "*** Update Block: human",
            "*** Move to: tmp",
            "*** Update Block: notes",
            "*** Move to: human",
            "*** Update Block: tmp",
            "*** Move to: notes",
        ]
    )
    edit = _patch(patch)
    assert edit.error is None
    assert edit.renamed == {"human": "notes", "notes": "human"}
    assert (edit.changed, edit.created, edit.deleted) == ({}, {}, ())


def test_memory_patch_label_is_ignored_in_multi_block_mode() -> None:
    edit = _patch("*** Delete Block: notes", label="human")
    assert edit.deleted == ("notes",)


def test_memory_patch_multi_block_errors() -> None:
    _failed(_patch("*** Add Block: human\n+x"), "Error: Memory block 'human' already exists")
    _failed(_patch("*** Delete Block: nope"), "Error: Memory block 'nope' does not exist")
    _failed(_patch("*** Update Block: nope\n+x"), "Error: Memory block 'nope' does not exist")
    _failed(_patch("*** Update Block: persona\n+x"), READ_ONLY)
    _failed(_patch("*** Update Block: notes\n-zzz"), NOT_FOUND + "zzz")
    _failed(
        _patch("*** Update Block: notes\n*** Move to: human"),
        "Error performing rename: Error: Memory block 'human' already exists",
    )
    _failed(
        _patch("*** Delete Block: notes\n*** Move to: other"),
        "Error performing rename: 'Block field notes does not exist (available sections = "
        "human, persona)'",
    )


def test_memory_patch_header_errors() -> None:
    for header in ("*** Add Block:", "*** Delete Block:", "*** Update Block:"):
        _failed(_patch(f"{header}  \n+x"), f"{header} must specify a non-empty label")
    _failed(_patch("*** Move to:"), "*** Move to: must specify a non-empty new label")
    _failed(_patch("*** Move to: x"), "*** Move to: must follow an Add/Update/Delete header")


def test_memory_patch_failure_keeps_nothing() -> None:
    edit = _patch("*** Delete Block: notes\n*** Update Block: human\n-nope")
    _failed(edit, NOT_FOUND + "nope")


def test_memory_patch_created_block_limit() -> None:
    _failed(
        _patch("*** Add Block: big\n+" + "x" * 100_001),
        "Edit failed: Exceeds 100000 character limit (requested 100001)",
    )

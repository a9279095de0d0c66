"""memory_apply_patch: Letta's simplified unified-diff patches over memory blocks.

A patch without any block header edits the block named by `label`. A patch with
`*** Add Block: <label>` (optionally followed by a `Description: <text>` line, then the
contents as `+` lines), `*** Delete Block: <label>`, `*** Update Block: <label>` (then
hunks) or `*** Move to: <label>` headers edits several blocks and ignores `label`.

Hunks: lines starting ' ' are context, '-' removed, '+' added; '@@' lines separate hunks;
'*** ', '---' and '+++' lines are ignored, a blank line is an empty context line and any
other line is skipped. Each hunk's context and removed lines must match exactly one run
of lines in the block; a hunk with nothing but '+' lines appends.

Texts and rules copy `memory_apply_patch` in Letta's
letta/services/tool_executor/core_tool_executor.py (v0.16.8), with these deliberate
differences:
- a `*** Move to:` renames its block after that block's Add or Update has run, as the
  header's documentation says (Letta queued the rename first, and the update that
  followed it was silently lost);
- an Update without hunks that is followed by a `*** Move to:` is a plain rename (Letta
  failed with "No applicable hunks found");
- deleting a block that does not exist is an error (Letta swallowed the failure and
  reported the block deleted);
- the whole patch applies or none of it does (Letta kept the operations that ran before
  a failing one);
- tabs are expanded in a line's text after its ' ', '-' or '+' marker (Letta expanded the
  whole line, marker included, so a tab in a patch line never matched one in the block).
"""

from dataclasses import dataclass, field
from typing import Final, Literal

from kelpie.tools._memory_edit import (
    LINE_NUMBER_PREFIX,
    LINE_NUMBER_WARNING,
    Scratch,
    ToolError,
    already_exists_text,
    rename_block,
)

_HEADERS: Final = ("*** Add Block:", "*** Delete Block:", "*** Update Block:", "*** Move to:")
_SUCCESS: Final = (
    "Successfully applied memory patch operations. Your system prompt has been recompiled "
    "with the updated memory contents and is now active in your context.\n\n"
    "Operations completed:\n- "
)


@dataclass
class _Operation:
    kind: Literal["add", "delete", "update", "rename"]
    label: str
    new_label: str = ""  # rename
    description: str = ""  # add
    lines: list[str] = field(default_factory=list)  # add: contents; update: the hunks


def apply_patch(scratch: Scratch, label: str, patch: str) -> str:
    """Apply `patch`; return Letta's return value: the block's new value in single-block
    mode, a summary of the operations in multi-block mode."""
    if LINE_NUMBER_PREFIX.search(patch):
        raise ToolError(
            "Patch contains a line number prefix, which is not allowed. Do not include line "
            "numbers (they are for display only)."
        )
    if LINE_NUMBER_WARNING in patch:
        raise ToolError(
            "Patch contains the line number warning banner, which is not allowed. Provide "
            "only the text to edit."
        )
    lines = patch.splitlines()
    if not any(line.startswith(_HEADERS) for line in lines):
        if not scratch.has(label):
            raise ToolError(_missing(label))
        scratch.check_writable(label)
        new_value = patch_value(scratch.value(label), lines)
        scratch.set_value(label, new_value)
        return new_value
    done = [_run(scratch, operation) for operation in _parse(lines)]
    return _SUCCESS + "\n- ".join(done)


def patch_value(value: str, patch_lines: list[str]) -> str:
    """Apply the hunks in `patch_lines` to `value`, one after another."""
    lines = value.expandtabs().split("\n")
    hunks = _hunks(patch_lines)
    if not hunks:
        raise ToolError(
            "No applicable hunks found in patch. Ensure lines start with ' ', '-', or '+'."
        )
    for hunk in hunks:
        expected = [line[1:] for line in hunk if line[0] in " -"]
        replacement = [line[1:] for line in hunk if line[0] in " +"]
        if not expected:
            lines += replacement
            continue
        width = len(expected)
        starts = [i for i in range(len(lines) - width + 1) if lines[i : i + width] == expected]
        if not starts:
            sample = "\n".join(expected[:4])
            raise ToolError(
                "Failed to apply patch: expected hunk context not found in the memory block. "
                "Verify the target lines exist and try providing more context. Expected "
                f"start:\n{sample}"
            )
        if len(starts) > 1:
            raise ToolError(
                "Failed to apply patch: hunk context matched multiple places in the memory "
                "block. Please add more unique surrounding context to disambiguate."
            )
        lines[starts[0] : starts[0] + width] = replacement
    return "\n".join(lines)


def _hunks(patch_lines: list[str]) -> list[list[str]]:
    hunks: list[list[str]] = []
    hunk: list[str] = []
    for line in patch_lines:
        if line.startswith(("*** ", "---", "+++")):
            continue
        if line.startswith("@@"):
            if hunk:
                hunks.append(hunk)
                hunk = []
        elif line.startswith((" ", "-", "+")):
            hunk.append(line[0] + line[1:].expandtabs())
        elif not line.strip():
            hunk.append(" ")
    if hunk:
        hunks.append(hunk)
    return hunks


def _header_label(line: str) -> str:
    return line.split(":", 1)[1].strip()


def _parse(lines: list[str]) -> list[_Operation]:
    operations: list[_Operation] = []
    current: _Operation | None = None  # the Add or Update whose body lines follow
    moves: list[_Operation] = []  # `*** Move to:` of `current`, run after it
    last_label: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        header = next((h for h in _HEADERS if line.startswith(h)), None)
        if header is None:
            if current is not None and current.kind == "add":
                if line.startswith("+"):
                    current.lines.append(line[1:].expandtabs())
                elif not line.strip():
                    current.lines.append("")
            elif current is not None:
                current.lines.append(line)
            continue
        target = _header_label(line)
        if header == "*** Move to:":
            if not target:
                raise ToolError("*** Move to: must specify a non-empty new label")
            if last_label is None:
                raise ToolError("*** Move to: must follow an Add/Update/Delete header")
            move = _Operation("rename", last_label, new_label=target)
            (moves if current is not None else operations).append(move)
            last_label = target
            continue
        if current is not None:
            operations += _flush(current, moves)
            current, moves = None, []
        if not target:
            raise ToolError(f"{header} must specify a non-empty label")
        last_label = target
        if header == "*** Delete Block:":
            operations.append(_Operation("delete", target))
        elif header == "*** Update Block:":
            current = _Operation("update", target)
        else:
            current = _Operation("add", target)
            if i < len(lines) and lines[i].startswith("Description:"):
                current.description = _header_label(lines[i])
                i += 1
    if current is not None:
        operations += _flush(current, moves)
    return operations


def _flush(operation: _Operation, moves: list[_Operation]) -> list[_Operation]:
    """An operation and then its renames; an Update without hunks that is followed by a
    `*** Move to:` is a pure rename."""
    if operation.kind == "update" and moves and not _hunks(operation.lines):
        return moves
    return [operation, *moves]


def _run(scratch: Scratch, operation: _Operation) -> str:
    label = operation.label
    if operation.kind == "add":
        if scratch.has(label):
            raise ToolError(already_exists_text(label))
        value = "\n".join(operation.lines).rstrip("\n")
        scratch.create(label, value, operation.description)
        return f"Created memory block '{label}'"
    if operation.kind == "delete":
        if not scratch.has(label):
            raise ToolError(_missing(label))
        scratch.delete(label)
        return f"Deleted memory block '{label}'"
    if operation.kind == "rename":
        rename_block(scratch, label, operation.new_label)
        return f"Renamed memory block '{label}' to '{operation.new_label}'"
    if not scratch.has(label):
        raise ToolError(_missing(label))
    scratch.check_writable(label)
    scratch.set_value(label, patch_value(scratch.value(label), operation.lines))
    return f"Updated memory block '{label}'"


def _missing(label: str) -> str:
    return f"Error: Memory block '{label}' does not exist"

"""The data the core-memory tools work on: the blocks they see, the outcome they hand back,
and the scratch copy of an agent's memory that one tool call edits.

A tool call never touches storage. It edits a `Scratch` copy of the agent's blocks and,
if it succeeds, the copy is compared with the blocks it started from to give the net
`MemoryEdit`, which the agent loop commits in one transaction. A call that fails leaves no
changes at all, even a multi-block patch that failed half-way (Letta keeps the operations
that ran before the failure).

Texts shared by several tools live here; each names the place in Letta's server source
(v0.16.8) it copies.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kelpie.schemas import BLOCK_LIMIT_CHARS_DEFAULT, limit_error
from kelpie.schemas._blocks import BLOCK_LABEL_CHARS_MAX

# letta/constants.py: READ_ONLY_BLOCK_EDIT_ERROR (ERROR_MESSAGE_PREFIX is "Error", no colon).
READ_ONLY_ERROR: Final = "Error This block is read-only and cannot be edited."
# letta/constants.py: CORE_MEMORY_LINE_NUMBER_WARNING, the banner of the line-numbered view.
LINE_NUMBER_WARNING: Final = (
    "# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. "
    "Do NOT include line number prefixes in your memory edit tool calls."
)
# letta/constants.py: MEMORY_TOOLS_LINE_NUMBER_PREFIX_REGEX, a line starting "12→".
LINE_NUMBER_PREFIX: Final = re.compile(r"^[ \t]*\d+→[ \t]*", re.MULTILINE)


@dataclass(frozen=True)
class MemoryBlock:
    """What a memory tool sees of one of the agent's blocks."""

    label: str
    value: str
    limit: int
    read_only: bool = False
    description: str | None = None


@dataclass(frozen=True)
class MemoryEdit:
    """The outcome of one memory tool call: its return value, or an error text and then no
    changes at all.

    The changes are net, relative to the blocks the tool was given. `changed`, `described`
    and the keys of `renamed` name blocks by the label they had before the call; `created`
    by the label the new block ends up with; `deleted` lists labels of blocks that existed
    before the call. Apply deletions first, then renames (as one simultaneous relabelling:
    a patch may swap two labels), then value and description changes, then creations.
    """

    returned: str | None
    error: str | None = None
    changed: dict[str, str] = field(default_factory=dict)
    created: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    deleted: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)
    # label -> new description (memory omni `rename` with `path` and `description`).
    described: dict[str, str] = field(default_factory=dict)


class ToolError(Exception):
    """A tool call failed; the message is the exact text the model gets back."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def missing_block_text(label: str, labels: list[str]) -> str:
    """Letta's `Memory.get_block` raises a KeyError with this message (letta/schemas/
    memory.py), and the executor returns `str(error)`, which for a KeyError is the repr of
    the message: quotes included."""
    message = f"Block field {label} does not exist (available sections = {', '.join(labels)})"
    return repr(message)


def reject_line_numbers(argument: str, text: str, *, check_warning: bool = True) -> None:
    """Letta's guard against text copied from the line-numbered memory view
    (letta/services/tool_executor/core_tool_executor.py, memory_replace and friends)."""
    if LINE_NUMBER_PREFIX.search(text):
        raise ToolError(
            f"{argument} contains a line number prefix, which is not allowed. Do not include "
            "line numbers when calling memory tools (line numbers are for display purposes "
            "only)."
        )
    if check_warning and LINE_NUMBER_WARNING in text:
        raise ToolError(
            f"{argument} contains a line number warning, which is not allowed. Do not include "
            "line number information when calling memory tools (line numbers are for display "
            "purposes only)."
        )


@dataclass
class _Slot:
    origin: str | None  # the block's label before the call; None for a block made by it
    value: str
    limit: int
    read_only: bool
    description: str | None


class Scratch:
    """A copy of the agent's blocks that one tool call edits, in the agent's block order."""

    def __init__(self, blocks: Mapping[str, MemoryBlock]) -> None:
        self._blocks = blocks
        self._slots = {
            label: _Slot(label, block.value, block.limit, block.read_only, block.description)
            for label, block in blocks.items()
        }

    def labels(self) -> list[str]:
        return list(self._slots)

    def has(self, label: str) -> bool:
        return label in self._slots

    def value(self, label: str) -> str:
        """The block's value; Letta's KeyError text when there is no such block."""
        return self._get(label).value

    def check_writable(self, label: str) -> None:
        if self._get(label).read_only:
            raise ToolError(READ_ONLY_ERROR)

    def set_value(self, label: str, value: str) -> None:
        slot = self._get(label)
        if len(value) > slot.limit:
            raise ToolError(limit_error(slot.limit, len(value)))
        slot.value = value

    def set_description(self, label: str, description: str) -> None:
        self._get(label).description = description

    def create(self, label: str, value: str, description: str | None) -> None:
        _check_label(label)
        if len(value) > BLOCK_LIMIT_CHARS_DEFAULT:
            raise ToolError(limit_error(BLOCK_LIMIT_CHARS_DEFAULT, len(value)))
        self._slots[label] = _Slot(None, value, BLOCK_LIMIT_CHARS_DEFAULT, False, description)

    def delete(self, label: str) -> None:
        self._get(label)
        del self._slots[label]

    def rename(self, old: str, new: str) -> None:
        """Relabel a block in place, keeping its position in the block order."""
        self._get(old)
        if new == old:
            return
        _check_label(new)
        if new in self._slots:
            raise ToolError(already_exists_text(new))
        slots = self._slots.items()
        self._slots = {(new if label == old else label): slot for label, slot in slots}

    def edit(self, returned: str | None) -> MemoryEdit:
        """The net changes since the copy was made."""
        kept = {slot.origin for slot in self._slots.values() if slot.origin is not None}
        changed: dict[str, str] = {}
        created: dict[str, tuple[str, str | None]] = {}
        renamed: dict[str, str] = {}
        described: dict[str, str] = {}
        for label, slot in self._slots.items():
            if slot.origin is None:
                created[label] = (slot.value, slot.description)
                continue
            before = self._blocks[slot.origin]
            if label != slot.origin:
                renamed[slot.origin] = label
            if slot.value != before.value:
                changed[slot.origin] = slot.value
            if slot.description is not None and slot.description != before.description:
                described[slot.origin] = slot.description
        deleted = tuple(label for label in self._blocks if label not in kept)
        return MemoryEdit(returned, None, changed, created, deleted, renamed, described)

    def _get(self, label: str) -> _Slot:
        slot = self._slots.get(label)
        if slot is None:
            raise ToolError(missing_block_text(label, self.labels()))
        return slot


def rename_block(scratch: Scratch, old: str, new: str) -> None:
    """Letta's memory_rename wraps whatever goes wrong (core_tool_executor.py)."""
    try:
        scratch.rename(old, new)
    except ToolError as error:
        raise ToolError(f"Error performing rename: {error.text}") from None


def already_exists_text(label: str) -> str:
    """core_tool_executor.py, memory_apply_patch: `*** Add Block` on a label in use."""
    return f"Error: Memory block '{label}' already exists"


def _check_label(label: str) -> None:
    # Kelpie's own check (Letta would fail in the database): a label the block API accepts.
    if not 1 <= len(label) <= BLOCK_LABEL_CHARS_MAX:
        raise ToolError(
            f"Error: Invalid memory block label '{label}': a label must be 1 to "
            f"{BLOCK_LABEL_CHARS_MAX} characters long"
        )

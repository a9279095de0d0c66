"""Letta's core-memory tools as pure functions over an agent's blocks.

`run_memory_tool(name, arguments, blocks)` runs one tool call against a copy of the blocks
and returns a `MemoryEdit`: the tool's return value and the net changes for the agent loop
to commit in one transaction, or an error text and no changes. It reads no clock, draws no
randomness and touches no storage.

Return values and error texts copy Letta's server (v0.16.8), mostly
`LettaCoreToolExecutor` in letta/services/tool_executor/core_tool_executor.py: the value
tools return the block's whole new value, the omni `memory` tool and multi-block patches
return a sentence, `memory_finish_edits` returns None. An error text is what Letta's tool
return carried: `str()` of the exception the tool raised.

Kelpie departs from Letta where Letta's behaviour was an accident:
- a value over its block's `limit` is rejected with `limit_error` (Letta stopped enforcing
  limits in PR #9983);
- `memory_rethink` on a missing label creates the block, as its documentation says
  (Letta's read-only check raised first, so it never could);
- the omni `insert` without `insert_line` appends (Letta compared None with 0 and failed);
- labels in `/memories/<label>` paths keep their slashes for every command (Letta turned
  them into underscores for insert, delete and rename only);
- `create` on a label in use fails with Letta's patch-mode text instead of a database error;
- argument types are checked (Letta passed whatever came), and a failed omni `delete` is
  an error rather than a successful return that starts with "Error performing delete".
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from kelpie.tools._memory_edit import (
    MemoryBlock,
    MemoryEdit,
    Scratch,
    ToolError,
    already_exists_text,
    missing_block_text,
    reject_line_numbers,
    rename_block,
)
from kelpie.tools._memory_patch import apply_patch

_RECOMPILED: Final = "Your system prompt has been recompiled"
_PATH_PREFIX: Final = "/memories/"


# --- arguments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Param:
    name: str
    kind: type[str] | type[int]
    required: bool = True


@dataclass(frozen=True)
class _Args:
    """A call's arguments, checked against the tool's signature; optional arguments that
    were left out (or sent as null) are absent."""

    texts: dict[str, str]
    numbers: dict[str, int]


def _bind(tool: str, params: tuple[_Param, ...], arguments: Mapping[str, Any]) -> _Args:
    # Letta called the executor method with the arguments as keywords, so a bad call failed
    # with Python's TypeError text for that method.
    qualname = f"LettaCoreToolExecutor.{tool}()"
    names = [param.name for param in params]
    unexpected = next((name for name in arguments if name not in names), None)
    if unexpected is not None:
        raise ToolError(f"{qualname} got an unexpected keyword argument '{unexpected}'")
    missing = [f"'{p.name}'" for p in params if p.required and p.name not in arguments]
    if missing:
        raise ToolError(
            f"{qualname} missing {len(missing)} required positional "
            f"argument{'s' if len(missing) > 1 else ''}: {_python_list(missing)}"
        )
    texts: dict[str, str] = {}
    numbers: dict[str, int] = {}
    for param in params:
        value = arguments.get(param.name)
        if value is None and not param.required:
            continue
        if isinstance(value, str) and param.kind is str:
            texts[param.name] = value
        elif isinstance(value, int) and not isinstance(value, bool) and param.kind is int:
            numbers[param.name] = value
        else:
            raise ToolError(
                f"{qualname} argument '{param.name}' must be {param.kind.__name__}, "
                f"not {type(value).__name__}"
            )
    return _Args(texts, numbers)


def _python_list(names: list[str]) -> str:
    """How Python lists missing arguments: 'a', 'a' and 'b', 'a', 'b', and 'c'."""
    if len(names) <= 2:
        return " and ".join(names)
    return f"{', '.join(names[:-1])}, and {names[-1]}"


# --- the edits several tools share ---------------------------------------------------------


def _replace(scratch: Scratch, label: str, old_string: str, new_string: str) -> str:
    """memory_replace and the omni str_replace: replace the one occurrence of old_string."""
    scratch.check_writable(label)
    reject_line_numbers("old_string", old_string)
    reject_line_numbers("new_string", new_string, check_warning=False)
    old_string = old_string.expandtabs()
    new_string = new_string.expandtabs()
    value = scratch.value(label).expandtabs()
    occurrences = value.count(old_string)
    if occurrences == 0:
        raise ToolError(
            f"No replacement was performed, old_string `{old_string}` did not appear verbatim "
            f"in memory block with label `{label}`."
        )
    if occurrences > 1:
        lines = [n for n, line in enumerate(value.split("\n"), start=1) if old_string in line]
        raise ToolError(
            f"No replacement was performed. Multiple occurrences of old_string `{old_string}` "
            f"in lines {lines}. Please ensure it is unique."
        )
    new_value = value.replace(old_string, new_string)
    scratch.set_value(label, new_value)
    return new_value


def _insert(scratch: Scratch, label: str, argument: str, text: str, insert_line: int) -> str:
    """memory_insert and the omni insert: insert lines after line `insert_line`."""
    scratch.check_writable(label)
    reject_line_numbers(argument, text)
    lines = scratch.value(label).expandtabs().split("\n")
    if insert_line == -1:
        insert_line = len(lines)
    elif not 0 <= insert_line <= len(lines):
        raise ToolError(
            f"Invalid `insert_line` parameter: {insert_line}. It should be within the range of "
            f"lines of the memory block: {[0, len(lines)]}, or -1 to append to the end of the "
            "memory block."
        )
    lines[insert_line:insert_line] = text.expandtabs().split("\n")
    new_value = "\n".join(lines)
    scratch.set_value(label, new_value)
    return new_value


# --- the tools ---------------------------------------------------------------------------


def _core_memory_append(scratch: Scratch, args: _Args) -> str:
    label = args.texts["label"]
    scratch.check_writable(label)
    new_value = scratch.value(label) + "\n" + args.texts["content"]
    scratch.set_value(label, new_value)
    return new_value


def _core_memory_replace(scratch: Scratch, args: _Args) -> str:
    label, old_content = args.texts["label"], args.texts["old_content"]
    scratch.check_writable(label)
    value = scratch.value(label)
    if old_content not in value:
        raise ToolError(f"Old content '{old_content}' not found in memory block '{label}'")
    new_value = value.replace(old_content, args.texts["new_content"])
    scratch.set_value(label, new_value)
    return new_value


def _memory_replace(scratch: Scratch, args: _Args) -> str:
    texts = args.texts
    return _replace(scratch, texts["label"], texts["old_string"], texts["new_string"])


def _memory_insert(scratch: Scratch, args: _Args) -> str:
    label, new_string = args.texts["label"], args.texts["new_string"]
    return _insert(scratch, label, "new_string", new_string, args.numbers.get("insert_line", -1))


def _memory_rethink(scratch: Scratch, args: _Args) -> str:
    label, new_memory = args.texts["label"], args.texts["new_memory"]
    exists = scratch.has(label)
    if exists:
        scratch.check_writable(label)
    reject_line_numbers("new_memory", new_memory)
    if exists:
        scratch.set_value(label, new_memory)
    else:
        scratch.create(label, new_memory, None)
    return new_memory


def _memory_finish_edits(scratch: Scratch, args: _Args) -> None:
    return None


def _memory_apply_patch(scratch: Scratch, args: _Args) -> str:
    return apply_patch(scratch, args.texts["label"], args.texts["patch"])


def _memory(scratch: Scratch, args: _Args) -> str:
    """The omni tool: create, str_replace, insert, delete or rename `/memories/<label>`."""
    texts = args.texts
    command, path = texts["command"], texts.get("path")
    if command in ("create", "str_replace", "insert", "delete") and path is None:
        raise ToolError(f"Error: path is required for {command} command")
    label = _label(path or "")
    if command == "create":
        description = texts.get("description")
        if description is None:
            raise ToolError("Error: description is required for create command")
        if scratch.has(label):
            raise ToolError(already_exists_text(label))
        scratch.create(label, texts.get("file_text") or "", description)
        return (
            f"Successfully created memory block '{label}'. {_RECOMPILED} with the new memory "
            "block and is now active in your context."
        )
    if command == "str_replace":
        old_string, new_string = texts.get("old_string"), texts.get("new_string")
        if old_string is None:
            raise ToolError("Error: old_string is required for str_replace command")
        if new_string is None:
            raise ToolError("Error: new_string is required for str_replace command")
        return _replace(scratch, label, old_string, new_string)
    if command == "insert":
        insert_text = texts.get("insert_text")
        if insert_text is None:
            raise ToolError("Error: insert_text is required for insert command")
        insert_line = args.numbers.get("insert_line", -1)
        return _insert(scratch, label, "insert_text", insert_text, insert_line)
    if command == "delete":
        if not scratch.has(label):
            raise ToolError(f"Error performing delete: {_missing(scratch, label)}")
        scratch.delete(label)
        return (
            f"Successfully deleted memory block '{label}'. {_RECOMPILED} without this memory "
            "block and is now active in your context."
        )
    if command == "rename":
        return _rename(scratch, args)
    raise ToolError(
        f"Error: Unknown command '{command}'. Supported commands: create, str_replace, "
        "insert, delete, rename"
    )


def _rename(scratch: Scratch, args: _Args) -> str:
    """The omni rename: a new description (`path`, `description`) or a new label
    (`old_path`, `new_path`)."""
    texts = args.texts
    path, description = texts.get("path"), texts.get("description")
    old_path, new_path = texts.get("old_path"), texts.get("new_path")
    if path and description:
        label = _label(path)
        if not scratch.has(label):
            raise ToolError(f"Error performing update_description: {_missing(scratch, label)}")
        scratch.set_description(label, description)
        return (
            f"Successfully updated description of memory block '{label}'. {_RECOMPILED} with "
            "the updated description and is now active in your context."
        )
    if old_path and new_path:
        old_label, new_label = _label(old_path), _label(new_path)
        rename_block(scratch, old_label, new_label)
        return (
            f"Successfully renamed memory block '{old_label}' to '{new_label}'. {_RECOMPILED} "
            "with the renamed memory block and is now active in your context."
        )
    raise ToolError(
        "Error: path and description are required for update_description command, or "
        "old_path and new_path are required for rename command"
    )


def _label(path: str) -> str:
    return path.removeprefix(_PATH_PREFIX).removeprefix("/")


def _missing(scratch: Scratch, label: str) -> str:
    return missing_block_text(label, scratch.labels())


# --- the table -------------------------------------------------------------------------------

_Tool = Callable[[Scratch, _Args], str | None]
_LABEL: Final = _Param("label", str)

# Parameters in the order of Letta's executor methods, which its TypeError texts follow.
_TOOLS: Final[Mapping[str, tuple[_Tool, tuple[_Param, ...]]]] = {
    "core_memory_append": (_core_memory_append, (_LABEL, _Param("content", str))),
    "core_memory_replace": (
        _core_memory_replace,
        (_LABEL, _Param("old_content", str), _Param("new_content", str)),
    ),
    "memory_replace": (
        _memory_replace,
        (_LABEL, _Param("old_string", str), _Param("new_string", str)),
    ),
    "memory_insert": (
        _memory_insert,
        (_LABEL, _Param("new_string", str), _Param("insert_line", int, required=False)),
    ),
    "memory_rethink": (_memory_rethink, (_LABEL, _Param("new_memory", str))),
    "memory_finish_edits": (_memory_finish_edits, ()),
    "memory_apply_patch": (_memory_apply_patch, (_LABEL, _Param("patch", str))),
    "memory": (
        _memory,
        (
            _Param("command", str),
            _Param("file_text", str, required=False),
            _Param("description", str, required=False),
            _Param("path", str, required=False),
            _Param("old_string", str, required=False),
            _Param("new_string", str, required=False),
            _Param("insert_line", int, required=False),
            _Param("insert_text", str, required=False),
            _Param("old_path", str, required=False),
            _Param("new_path", str, required=False),
        ),
    ),
}

MEMORY_TOOL_NAMES: Final = frozenset(_TOOLS)


def run_memory_tool(
    name: str, arguments: Mapping[str, Any], blocks: Mapping[str, MemoryBlock]
) -> MemoryEdit:
    """Run the memory tool `name` with the model's `arguments` against `blocks` (label ->
    block, in the agent's block order, which error texts list). A failed call returns the
    error text and no changes. Raises KeyError for a name not in MEMORY_TOOL_NAMES."""
    tool, params = _TOOLS[name]
    scratch = Scratch(blocks)
    try:
        returned = tool(scratch, _bind(name, params, arguments))
    except ToolError as error:
        return MemoryEdit(returned=None, error=error.text)
    return scratch.edit(returned)

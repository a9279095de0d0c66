"""The compiled system message (`message_ids[0]`), character for character as Letta builds it.

Sources, all in letta-ai/letta at v0.16.8 (unchanged up to the archived head):

- `letta/prompts/prompt_generator.py`: `get_system_message_from_compiled_memory` (the
  `{CORE_MEMORY}` substitution, appended when missing) and `compile_memory_metadata_block`
  (the `<memory_metadata>` lines);
- `letta/schemas/memory.py`: `Memory.compile` and its block renderers (standard,
  line-numbered, git-memory projection), and `compile_available_skills`;
- `letta/helpers/tool_rule_solver.py`: `compile_tool_rule_prompts` (which rules, in which
  order, under which description) and `letta/schemas/tool_rule.py`: each rule's
  `render_prompt`. Letta ignores `prompt_template`: every rule renders fixed text;
- `letta/helpers/datetime_helpers.py`: `format_datetime` (`%Y-%m-%d %I:%M:%S %p %Z%z`);
- `letta/agents/letta_agent_v2.py`: `generate_request_system_prompt` (request-scoped
  skills appended to the stored text, never persisted).

Letta's `<directories>` section (attached file sources) is not rendered: Kelpie has no
sources yet.
"""

import dataclasses
import datetime as dt
import posixpath
import zoneinfo
from collections.abc import Sequence
from typing import Final, NamedTuple, TypeAlias

from kelpie.errors import InvalidInput
from kelpie.schemas import Block, ToolRule
from kelpie.schemas._tools import (
    ChildToolRule,
    ConditionalToolRule,
    ContinueToolRule,
    InitToolRule,
    MaxCountPerStepToolRule,
    ParentToolRule,
    RequiredBeforeExitToolRule,
    RequiresApprovalToolRule,
    TerminalToolRule,
)

CORE_MEMORY_PLACEHOLDER: Final = "{CORE_MEMORY}"
CONVERSATION_ID_DEFAULT: Final = "default"
TIMEZONE_DEFAULT: Final = "UTC"

# letta/constants.py CORE_MEMORY_LINE_NUMBER_WARNING.
LINE_NUMBER_WARNING: Final = (
    "# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. "
    "Do NOT include line number prefixes in your memory edit tool calls."
)
# letta/helpers/tool_rule_solver.py COMPILED_PROMPT_DESCRIPTION.
TOOL_RULES_DESCRIPTION: Final = (
    "The following constraints define rules for tool usage and guide desired behavior. "
    "These rules must be followed to ensure proper tool execution and workflow. "
    "A single response may contain multiple tool calls."
)

_MEMORY_BLOCKS_HEAD: Final = (
    "<memory_blocks>\n"
    "The following memory blocks are currently engaged in your core memory unit:\n\n"
)
_MEMORY_BLOCKS_TAIL: Final = "\n</memory_blocks>"
# Agent types whose prompt carries no memory blocks at all.
_BLOCKLESS_AGENT_TYPES: Final = frozenset({"react_agent", "workflow_agent"})
# Agent types that see line-numbered blocks, on Anthropic models only.
_LINE_NUMBERED_AGENT_TYPES: Final = frozenset(
    {"sleeptime_agent", "memgpt_v2_agent", "letta_v1_agent"}
)
_LINE_NUMBERED_ENDPOINT_TYPE: Final = "anthropic"

# Git-backed memory ("git-memory-enabled" agents): labels are paths.
_SYSTEM_PREFIX: Final = "system/"
_SKILLS_PREFIX: Final = "skills/"
_PERSONA_LABEL: Final = "system/persona"
_PROJECTION_REMINDER: Final = (
    "\n\nReminder: <projection> contains the local path of the memory file projection."
)
# `$MEMORY_DIR` in projections, `${MEMORY_DIR}` in file trees: both exactly as Letta has them.
_PROJECTION_ROOT: Final = "$MEMORY_DIR"
_TREE_ROOT: Final = "${MEMORY_DIR}"
_SKILL_FILE: Final = "SKILL.md"

_TREE_BRANCH: Final = "├── "
_TREE_LAST: Final = "└── "
_TREE_PIPE: Final = "│   "
_TREE_SPACE: Final = "    "


class ClientSkill(NamedTuple):
    """A skill the client offers for one request (Letta's ClientSkillSchema)."""

    name: str
    description: str
    location: str


# (name, description, location): a ClientSkill or a plain tuple.
SkillEntry: TypeAlias = tuple[str, str, str]


# --- small pure helpers -----------------------------------------------------------------


def uses_line_numbers(agent_type: str, model_endpoint_type: str | None) -> bool:
    """Whether Letta renders this agent's blocks line-numbered: sleeptime, memgpt_v2 and
    letta_v1 agents on Anthropic models (`llm_config.model_endpoint_type`) only."""
    return (
        agent_type.lower() in _LINE_NUMBERED_AGENT_TYPES
        and model_endpoint_type == _LINE_NUMBERED_ENDPOINT_TYPE
    )


def format_letta_time(when: dt.datetime, timezone: str | None = TIMEZONE_DEFAULT) -> str:
    """`when` in the IANA zone `timezone`, as Letta prints times to the model:
    `2026-03-01 09:00:00 AM UTC+0000` (strftime `%Y-%m-%d %I:%M:%S %p %Z%z`). With no
    zone (None or ""), `when` is printed in its own zone, as Letta does.

    AM/PM are written out rather than taken from the C library, so the locale cannot
    change them. Raises `InvalidInput` for an unknown zone and `ValueError` for a naive
    `when` (Letta would read it as the server's local time).
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("a time shown to the model must be timezone-aware")
    local = when
    if timezone:
        try:
            zone = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"Unknown timezone: {timezone!r}") from exc
        local = when.astimezone(zone)
    meridiem = "AM" if local.hour < 12 else "PM"
    return local.strftime(f"%Y-%m-%d %I:%M:%S {meridiem} %Z%z")


def tool_rule_prompt(rule: ToolRule) -> str | None:
    """The fixed text Letta renders for one tool rule (`render_prompt`), or None for the
    kinds that render nothing (run_first, requires_approval). `prompt_template` is
    ignored, as in Letta."""
    name = rule.tool_name
    match rule:
        case ChildToolRule():
            children = ", ".join(rule.children)
            return (
                f"<tool_rule>\nAfter using {name}, you must use one of these tools: {children}\n"
                "</tool_rule>"
            )
        case ParentToolRule():
            children = ", ".join(rule.children)
            return f"<tool_rule>\n{children} can only be used after {name}\n</tool_rule>"
        case ConditionalToolRule():
            return (
                f"<tool_rule>\n{name} will determine which tool to use next based on its output\n"
                "</tool_rule>"
            )
        case TerminalToolRule():
            return (
                f"<tool_rule>\n{name} ends your response (yields control) when called\n</tool_rule>"
            )
        case ContinueToolRule():
            return (
                f"<tool_rule>\n{name} requires continuing your response when called\n</tool_rule>"
            )
        case RequiredBeforeExitToolRule():
            return f"<tool_rule>{name} must be called before ending the conversation</tool_rule>"
        case MaxCountPerStepToolRule():
            return (
                f"<tool_rule>\n{name}: at most {rule.max_count_limit} use(s) per response\n"
                "</tool_rule>"
            )
        case InitToolRule() | RequiresApprovalToolRule():
            return None


def _tool_rules_in_prompt_order(rules: Sequence[ToolRule]) -> list[ToolRule]:
    """The rules `compile_tool_rule_prompts` walks, in its order: run_first, continue_loop,
    the child-based kinds (constrain_child_tools, conditional, max_count_per_step, in their
    given order), parent_last_tool, exit_loop. required_before_exit and requires_approval
    never reach the prompt."""
    init: list[ToolRule] = []
    continues: list[ToolRule] = []
    child_based: list[ToolRule] = []
    parents: list[ToolRule] = []
    terminals: list[ToolRule] = []
    for rule in rules:
        match rule:
            case InitToolRule():
                init.append(rule)
            case ContinueToolRule():
                continues.append(rule)
            case ChildToolRule() | ConditionalToolRule() | MaxCountPerStepToolRule():
                child_based.append(rule)
            case ParentToolRule():
                parents.append(rule)
            case TerminalToolRule():
                terminals.append(rule)
            case RequiredBeforeExitToolRule() | RequiresApprovalToolRule():
                pass
    return init + continues + child_based + parents + terminals


def _tool_usage_rules_section(rules: Sequence[ToolRule]) -> str:
    prompts = [p for rule in _tool_rules_in_prompt_order(rules) if (p := tool_rule_prompt(rule))]
    if not prompts:
        return ""
    body = "\n".join(prompts)
    return f"\n\n<tool_usage_rules>\n{TOOL_RULES_DESCRIPTION}\n\n{body}\n</tool_usage_rules>"


# --- memory blocks ----------------------------------------------------------------------


def _block_head(label: str, block: Block) -> str:
    """A block's opening tag, description and metadata, shared by both plain layouts."""
    read_only = "\n- read_only=true" if block.read_only else ""
    return (
        f"<{label}>\n"
        f"<description>\n{block.description or ''}\n</description>\n"
        f"<metadata>{read_only}\n"
        f"- chars_current={len(block.value)}\n"
        f"- chars_limit={block.limit}\n"
        "</metadata>\n"
    )


def _memory_blocks_standard(blocks: Sequence[Block]) -> str:
    if not blocks:
        return ""
    rendered = [
        f"{_block_head(b.label, b)}<value>\n{b.value}\n</value>\n</{b.label}>\n" for b in blocks
    ]
    return _MEMORY_BLOCKS_HEAD + "\n".join(rendered) + _MEMORY_BLOCKS_TAIL


def _memory_blocks_line_numbered(blocks: Sequence[Block]) -> str:
    # Unlike the standard layout, Letta writes the wrapper even when there are no blocks.
    rendered = []
    for b in blocks:
        lines = (
            "".join(f"{i}→ {line}\n" for i, line in enumerate(b.value.split("\n"), start=1))
            if b.value
            else ""
        )
        rendered.append(
            f"{_block_head(b.label, b)}<warning>\n{LINE_NUMBER_WARNING}\n</warning>\n"
            f"<value>\n{lines}</value>\n</{b.label}>\n"
        )
    return _MEMORY_BLOCKS_HEAD + "\n".join(rendered) + _MEMORY_BLOCKS_TAIL


@dataclasses.dataclass
class _MemoryNode:
    """A `system/…` path segment: a block (`leaf`), a folder of them, or both."""

    children: dict[str, "_MemoryNode"] = dataclasses.field(default_factory=dict)
    leaf: tuple[str, str] | None = None  # (value, description); the last block wins


def _render_memory_node(node: _MemoryNode, out: list[str], depth: int, path: str) -> None:
    pad = "  " * depth
    for key in sorted(node.children):
        child = node.children[key]
        child_path = f"{path}/{key}" if path else key
        out.append(f"{pad}<{key}>\n")
        if child.leaf is not None:
            value, description = child.leaf
            out.append(
                f"{pad}  <projection>{_PROJECTION_ROOT}/system/{child_path}.md</projection>\n"
            )
            if description:
                out.append(f"{pad}  <description>{description}</description>\n")
            value = value.rstrip("\n")
            if value:
                # Only the first line is indented, as in Letta.
                out.append(f"{pad}  {value}\n")
        _render_memory_node(child, out, depth + 1, child_path)
        out.append(f"{pad}</{key}>\n")


# A file tree: folders map to subtrees; files map to their description (None: no text).
_FileTree: TypeAlias = dict[str, "_FileTree | str | None"]


def _tree_folder(tree: _FileTree, parts: Sequence[str]) -> _FileTree:
    """The folder at `parts`, made as needed. A file standing where a folder must go
    becomes the folder (Letta crashes there)."""
    node = tree
    for part in parts:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    return node


def _render_file_tree(tree: _FileTree, out: list[str], prefix: str = "") -> None:
    """Like `tree`: folders first, then files, each group sorted, box-drawing connectors;
    a file's description, when it has one, follows in parentheses."""
    folders = sorted(name for name, node in tree.items() if isinstance(node, dict))
    files = sorted(name for name, node in tree.items() if not isinstance(node, dict))
    entries = [*folders, *files]
    for i, name in enumerate(entries):
        last = i == len(entries) - 1
        connector = _TREE_LAST if last else _TREE_BRANCH
        node = tree[name]
        if isinstance(node, dict):
            out.append(f"{prefix}{connector}{name}/\n")
            _render_file_tree(node, out, prefix + (_TREE_SPACE if last else _TREE_PIPE))
        else:
            description = (node or "").strip()
            suffix = f" ({description})" if description else ""
            out.append(f"{prefix}{connector}{name}{suffix}\n")


def _memory_git(blocks: Sequence[Block]) -> str:
    """Git-backed memory: `system/persona` in `<self>`, the other `system/*` blocks nested
    under `<memory>` by path, and blocks outside `system/` and `skills/` listed (names
    only) in an `<external_projection>` file tree. Nothing at all without `system/*`."""
    system_blocks = [b for b in blocks if b.label.startswith(_SYSTEM_PREFIX)]
    if not system_blocks:
        return ""
    out = [_PROJECTION_REMINDER]
    persona = next((b for b in system_blocks if b.label == _PERSONA_LABEL), None)
    if persona is not None:
        value = persona.value.rstrip("\n")
        out.append(
            f"\n\n<self>\n<projection>{_PROJECTION_ROOT}/system/persona.md</projection>\n"
            f"{value}\n</self>"
        )

    others = [b for b in system_blocks if b.label != _PERSONA_LABEL]
    external = [
        b
        for b in blocks
        if not b.label.startswith(_SYSTEM_PREFIX) and not b.label.startswith(_SKILLS_PREFIX)
    ]
    if not others and not external:
        return "".join(out)

    root = _MemoryNode()
    for b in others:
        parts = [p for p in b.label.removeprefix(_SYSTEM_PREFIX).split("/") if p]
        if not parts:
            continue
        node = root
        for part in parts:
            node = node.children.setdefault(part, _MemoryNode())
        node.leaf = (b.value, (b.description or "").strip())
    out.append("\n\n<memory>\n")
    _render_memory_node(root, out, depth=0, path="")

    if external:
        tree: _FileTree = {}
        for b in sorted(external, key=lambda b: b.label):
            parts = [p for p in b.label.strip().split("/") if p]
            if parts:
                _tree_folder(tree, parts[:-1])[f"{parts[-1]}.md"] = None
        out.append(f"<external_projection>\n{_TREE_ROOT}/\n")
        _render_file_tree(tree, out)
        out.append("</external_projection>\n")
    out.append("</memory>")
    return "".join(out)


def _memory_section(
    blocks: Sequence[Block], agent_type: str, *, line_numbered: bool, git_memory: bool
) -> str:
    if agent_type.lower() in _BLOCKLESS_AGENT_TYPES:
        return ""
    if git_memory:
        return _memory_git(blocks)
    if line_numbered:
        return _memory_blocks_line_numbered(blocks)
    return _memory_blocks_standard(blocks)


# --- metadata ---------------------------------------------------------------------------


def _memory_metadata(
    *,
    agent_id: str,
    conversation_id: str,
    recompiled_at: str,
    previous_message_count: int,
    archival_memory_count: int,
    archival_tags: Sequence[str],
) -> str:
    lines = [
        "<memory_metadata>",
        f"- AGENT_ID: {agent_id}",
        f"- CONVERSATION_ID: {conversation_id}",
        f"- System prompt last recompiled: {recompiled_at}",
        f"- {previous_message_count} previous messages between you and the user are stored in "
        "recall memory",
    ]
    if archival_memory_count > 0:
        lines.append(
            f"- {archival_memory_count} total memories you created are stored in archival "
            "memory (use tools to access them)"
        )
    if archival_tags:
        lines.append(f"- Available archival memory tags: {', '.join(archival_tags)}")
    lines.append("</memory_metadata>")
    return "\n".join(lines)


# --- skills -----------------------------------------------------------------------------


def _first_line(text: str) -> str:
    return text.strip().split("\n")[0].strip()


def _skill_root(name: str, location: str) -> tuple[str, str]:
    """(root folder, path under it) for a skill's location: `<root>/<name>/SKILL.md` groups
    under `<root>`; any other location under its own folder."""
    location = location.strip()
    if location.endswith("/" + _SKILL_FILE):
        skill_dir = posixpath.dirname(location)
        folder = posixpath.basename(skill_dir)
        if folder == name.split("/")[-1]:
            # Letta takes os.path.relpath(location, root), which is this for such a path.
            return posixpath.dirname(skill_dir), f"{folder}/{_SKILL_FILE}"
    return posixpath.dirname(location), posixpath.basename(location)


def available_skills_section(blocks: Sequence[Block], client_skills: Sequence[SkillEntry]) -> str:
    """Letta's `<available_skills>` section (with its two leading newlines), or "" when
    there is no skill. Skills come first from the agent's `skills/<name>` (or
    `skills/<name>/SKILL`) blocks, then from the client; a name seen before is skipped.
    Only the first line of a description is shown. Skills are grouped by the folder
    holding their skill folder, one file tree per group, groups sorted."""
    entries: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for b in blocks:
        if not b.label.startswith(_SKILLS_PREFIX):
            continue
        parts = b.label.split("/")
        name = parts[1]
        top_level = len(parts) == 2 or (len(parts) == 3 and parts[2] == "SKILL")
        if not top_level or name in seen:
            continue
        seen.add(name)
        default_location = f"{_TREE_ROOT}/skills/{name}/{_SKILL_FILE}"
        entries.append((name, _first_line(b.description or ""), default_location))
    for skill in client_skills:
        name, description, location = skill
        if name in seen:
            continue
        seen.add(name)
        location = location.strip() or f"{_TREE_ROOT}/skills/{name}/{_SKILL_FILE}"
        entries.append((name, _first_line(description), location))
    if not entries:
        return ""

    grouped: dict[str, list[tuple[str, str]]] = {}
    for name, description, location in entries:
        root, path = _skill_root(name, location)
        grouped.setdefault(root, []).append((path, description))

    out = ["\n\n<available_skills>\n"]
    roots = sorted(grouped)
    for index, root in enumerate(roots):
        out.append(f"{root}\n")
        tree: _FileTree = {}
        for path, description in sorted(grouped[root], key=lambda entry: entry[0]):
            parts = [p for p in path.split("/") if p]
            if parts:
                _tree_folder(tree, parts[:-1])[parts[-1]] = description
        _render_file_tree(tree, out)
        if index != len(roots) - 1:
            out.append("\n")
    out.append("</available_skills>")
    return "".join(out)


def append_available_skills(
    system_text: str, *, blocks: Sequence[Block], client_skills: Sequence[SkillEntry]
) -> str:
    """The system text for one LLM request: the stored (compiled) text with the
    request's skills appended, as Letta's `generate_request_system_prompt` does. The
    result is never stored."""
    section = available_skills_section(blocks, client_skills)
    if not section:
        return system_text
    return system_text.rstrip("\n") + "\n\n" + section.lstrip("\n")


# --- the compiler -----------------------------------------------------------------------


def compile_system_prompt(
    *,
    system: str,
    blocks: Sequence[Block],
    agent_type: str,
    agent_id: str,
    conversation_id: str | None = None,
    recompiled_at: dt.datetime,
    timezone: str | None = TIMEZONE_DEFAULT,
    previous_message_count: int = 0,
    archival_memory_count: int = 0,
    archival_tags: Sequence[str] = (),
    tool_rules: Sequence[ToolRule] = (),
    line_numbered: bool = False,
    git_memory: bool = False,
    client_skills: Sequence[SkillEntry] | None = None,
) -> str:
    """The agent's system message: `system` with every `{CORE_MEMORY}` replaced by the
    memory blocks, the tool usage rules and the memory metadata (appended after two
    newlines when `system` has no placeholder).

    - `blocks` render in the given order; none for react/workflow agents, and nothing
      when there are none (except in the line-numbered layout, which keeps its wrapper).
    - `line_numbered`: Letta's layout for sleeptime/memgpt_v2/letta_v1 agents on
      Anthropic models (see `uses_line_numbers`). Letta applies it only when it rebuilds
      the prompt with the agent's model known, not in the message made at create.
    - `git_memory`: the agent has the `git-memory-enabled` tag; blocks render as path
      projections (`line_numbered` is then ignored).
    - `archival_tags` render in the given order (Letta sorts them).
    - `client_skills`: None gives the stored message. A sequence, even empty, gives the
      text for one request: the `<available_skills>` section, with the agent's own
      `skills/` blocks, appended (see `append_available_skills`).
    """
    memory = _memory_section(
        blocks, agent_type, line_numbered=line_numbered, git_memory=git_memory
    ) + _tool_usage_rules_section(tool_rules)
    metadata = _memory_metadata(
        agent_id=agent_id,
        conversation_id=conversation_id or CONVERSATION_ID_DEFAULT,
        recompiled_at=format_letta_time(recompiled_at, timezone),
        previous_message_count=previous_message_count,
        archival_memory_count=archival_memory_count,
        archival_tags=archival_tags,
    )
    if CORE_MEMORY_PLACEHOLDER not in system:
        system += "\n\n" + CORE_MEMORY_PLACEHOLDER
    compiled = system.replace(CORE_MEMORY_PLACEHOLDER, memory + "\n\n" + metadata)
    if client_skills is None:
        return compiled
    return append_available_skills(compiled, blocks=blocks, client_skills=client_skills)

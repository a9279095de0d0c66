"""Runs the tools an agent calls. Built-in memory tools edit the turn's working copy of the
agent's blocks, and working-memory tools an overlay of the agent's keys (both committed
with the step); search tools read the store; tools that need a sandbox or a client return
a clear error until those exist."""

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Final

from kelpie.agent._turn import Turn
from kelpie.agent._working_memory import WorkingMemoryScratch
from kelpie.env import Env
from kelpie.llm import ToolCall
from kelpie.memory import MemorySearch, archival_result, archive_id_of
from kelpie.schemas import (
    BLOCK_PREFIX,
    PASSAGE_PREFIX,
    SEARCH_RESULTS_MAX,
    Block,
    Passage,
    Tool,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.storage import SEARCHABLE_ROLES, ChangedBlock, SearchFilter, message_search_text
from kelpie.tools import (
    MEMORY_TOOL_NAMES,
    WORKING_MEMORY_TOOL_NAMES,
    MemoryBlock,
    MemoryEdit,
    parse_working_memory_call,
    run_memory_tool,
)

SEND_MESSAGE_RESULT: Final = "Sent message successfully."
CONVERSATION_SEARCH_LIMIT_DEFAULT: Final = 5
ARCHIVAL_SEARCH_TOP_K_DEFAULT: Final = 10
# Arguments the loop adds to tool schemas; never passed to the tool itself.
LOOP_ARGUMENTS: Final = frozenset({"request_heartbeat", "thinking"})
_DATE_HELP: Final = "Use ISO 8601, e.g. 2024-01-15 or 2024-01-15T14:30."
_SANDBOXED_TYPES: Final = frozenset({"custom", "letta_builtin", "external_mcp"})


@dataclasses.dataclass
class ToolOutcome:
    returned: str | None
    ok: bool
    arguments: dict[str, Any]
    stdout: list[str] | None = None
    stderr: list[str] | None = None
    # Ran by the client (an approval reply): its return is passed on unpackaged.
    from_client: bool = False


def _parse_date(text: object, *, end: bool) -> int | None:
    """An ISO 8601 date or time as microseconds; a date-only end covers its whole day.
    Raises ValueError for anything else."""
    if text is None or text == "":
        return None
    value = dt.datetime.fromisoformat(str(text))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if end and len(str(text)) <= len("YYYY-MM-DD"):
        value += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    return us_from_datetime(value)


def _date_range(
    arguments: Mapping[str, Any], start_key: str, end_key: str
) -> tuple[int | None, int | None] | str:
    """(start, end) in microseconds, or the error text the model gets for a bad date."""
    try:
        return (
            _parse_date(arguments.get(start_key), end=False),
            _parse_date(arguments.get(end_key), end=True),
        )
    except ValueError as error:
        return f"Invalid date: {error}. {_DATE_HELP}"


def _count(value: object, default: int) -> int:
    """A result count the model asked for, within 1..SEARCH_RESULTS_MAX."""
    try:
        count = int(value) if value is not None else default  # type: ignore[call-overload]  # any JSON value; bad ones raise
    except (TypeError, ValueError):
        count = default
    return max(1, min(count, SEARCH_RESULTS_MAX))


class ToolExecutor:
    def __init__(self, env: Env, memory: MemorySearch, turn: Turn, blocks: list[Block]) -> None:
        self._env = env
        self._search = memory
        self._agent = turn.agent
        self._run_id = turn.run.id
        self.blocks: dict[str, Block] = {block.label: block for block in blocks}
        # What the step commit writes: existing blocks as each tool call left them (each
        # change gets its history entry, naming the call), and new blocks by id.
        self.changed: list[ChangedBlock] = []
        self.created: dict[str, Block] = {}
        self.detached: list[str] = []
        self.passages: list[Passage] = []
        self.working_memory = WorkingMemoryScratch(env, turn.agent.id)
        # Set when a tool changed any block; the loop recompiles the prompt and clears it.
        self.memory_changed = False

    async def execute(self, call: ToolCall, tool: Tool | None) -> ToolOutcome:
        try:
            parsed = json.loads(call.arguments or "{}")
        except ValueError as error:
            return ToolOutcome(f"Error parsing arguments of {call.name}: {error}", False, {})
        if not isinstance(parsed, dict):
            return ToolOutcome(f"Arguments of {call.name} must be a JSON object", False, {})
        arguments = {k: v for k, v in parsed.items() if k not in LOOP_ARGUMENTS}
        if tool is None:
            return ToolOutcome(f"Tool {call.name} not found", False, parsed)
        returned, ok = await self._dispatch(tool, arguments, call.id)
        return ToolOutcome(returned, ok, parsed)

    async def _dispatch(
        self, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> tuple[str | None, bool]:
        name = tool.name
        if name in MEMORY_TOOL_NAMES:
            return self._memory(name, arguments, call_id)
        if name in WORKING_MEMORY_TOOL_NAMES:
            checked = parse_working_memory_call(name, arguments)
            if isinstance(checked, str):
                return checked, False
            return await self.working_memory.run(checked)
        if name == "send_message":
            return SEND_MESSAGE_RESULT, True
        if name == "conversation_search":
            return await self._conversation_search(arguments)
        if name == "archival_memory_insert":
            return await self._archival_insert(arguments)
        if name == "archival_memory_search":
            return await self._archival_search(arguments)
        if tool.tool_type in _SANDBOXED_TYPES:
            return (
                f"Tool '{name}' cannot run: running {tool.tool_type} tools needs the sandbox,"
                " which this Kelpie version does not have yet",
                False,
            )
        return f"Tool '{name}' has no executor in this Kelpie version", False

    def _memory(
        self, name: str, arguments: Mapping[str, Any], call_id: str
    ) -> tuple[str | None, bool]:
        views = {
            label: MemoryBlock(
                label=label,
                value=block.value,
                limit=block.limit,
                read_only=block.read_only,
                description=block.description,
            )
            for label, block in self.blocks.items()
        }
        edit = run_memory_tool(name, arguments, views)
        if edit.error is not None:
            return edit.error, False
        self._apply(edit, call_id)
        self.memory_changed = True
        return edit.returned, True

    def _apply(self, edit: MemoryEdit, call_id: str) -> None:
        """Applies an edit in the order MemoryEdit defines: deletions, renames (all at once:
        a patch may swap labels), value and description changes (keyed by the original
        label), creations. Each existing block the call changed is recorded once, as the
        call left it. A deleted block is only detached: the step's edits to it are dropped."""
        now = datetime_from_us(self._env.clock.now_us())
        for label in edit.deleted:
            block = self.blocks.pop(label)
            self.changed = [c for c in self.changed if c.block.id != block.id]
            if self.created.pop(block.id, None) is None:
                self.detached.append(block.id)
        touched: dict[str, Block] = {}  # by id, in the order the call first touched them
        moved = {old: self.blocks.pop(old) for old in edit.renamed}
        for old, new in edit.renamed.items():
            self._put(moved[old], touched, label=new, updated_at=now)
        for label, value in edit.changed.items():
            self._put(
                self.blocks[edit.renamed.get(label, label)], touched, value=value, updated_at=now
            )
        for label, description in edit.described.items():
            block = self.blocks[edit.renamed.get(label, label)]
            self._put(block, touched, description=description, updated_at=now)
        self.changed.extend(
            ChangedBlock(block, call_id)
            for block in touched.values()
            if block.id not in self.created
        )
        for label, (value, new_description) in edit.created.items():
            block = Block(
                id=self._env.entropy.new_id(BLOCK_PREFIX),
                label=label,
                value=value,
                description=new_description,
                created_at=now,
                updated_at=now,
            )
            self.blocks[label] = self.created[block.id] = block

    def _put(self, block: Block, touched: dict[str, Block], **changes: Any) -> None:
        updated = block.model_copy(update=changes)
        self.blocks[updated.label] = touched[updated.id] = updated
        if updated.id in self.created:
            self.created[updated.id] = updated

    async def _conversation_search(self, arguments: Mapping[str, Any]) -> tuple[str, bool]:
        roles = tuple(str(role) for role in arguments.get("roles") or [])
        unknown = [role for role in roles if role not in SEARCHABLE_ROLES]
        if unknown:
            return f"Unknown roles {unknown}: use assistant, user or tool", False
        dates = _date_range(arguments, "start_date", "end_date")
        if isinstance(dates, str):
            return dates, False
        start_us, end_us = dates
        search = SearchFilter(
            kind="message", scopes=(self._agent.id,), start_us=start_us, end_us=end_us, roles=roles
        )
        found = await self._search.search_messages(
            search,
            str(arguments.get("query") or ""),
            _count(arguments.get("limit"), CONVERSATION_SEARCH_LIMIT_DEFAULT),
            # The turn in progress is in the model's context already.
            accept=lambda message: message.run_id != self._run_id,
        )
        if not found:
            return "No results found.", True
        results = [
            {
                "timestamp": message.created_at.isoformat(),
                "role": message.role,
                "content": message_search_text(message) or "",
            }
            for message, _ in found
        ]
        return json.dumps(results, ensure_ascii=False), True

    async def _archival_insert(self, arguments: Mapping[str, Any]) -> tuple[str | None, bool]:
        content = arguments.get("content")
        if not isinstance(content, str) or not content:
            return "archival_memory_insert needs a non-empty string 'content'", False
        now = datetime_from_us(self._env.clock.now_us())
        tags = list(dict.fromkeys(str(tag) for tag in arguments.get("tags") or []))
        # Written with the step's commit, like every other effect of the step.
        self.passages.append(
            Passage(
                id=self._env.entropy.new_id(PASSAGE_PREFIX),
                text=content,
                archive_id=archive_id_of(self._agent.id),
                agent_id=self._agent.id,
                tags=tags,
                created_at=now,
                updated_at=now,
            )
        )
        return None, True

    async def _archival_search(self, arguments: Mapping[str, Any]) -> tuple[str, bool]:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            return "archival_memory_search needs a non-empty string 'query'", False
        dates = _date_range(arguments, "start_datetime", "end_datetime")
        if isinstance(dates, str):
            return dates, False
        start_us, end_us = dates
        search = SearchFilter(
            kind="passage",
            scopes=await self._search.agent_archives(self._agent.id),
            start_us=start_us,
            end_us=end_us,
            tags=tuple(str(tag) for tag in arguments.get("tags") or []),
            match_all_tags=arguments.get("tag_match_mode") == "all",
        )
        found = await self._search.search_passages(
            search, query, _count(arguments.get("top_k"), ARCHIVAL_SEARCH_TOP_K_DEFAULT)
        )
        results = [archival_result(passage).model_dump() for passage, _ in found]
        return json.dumps(results, ensure_ascii=False), True

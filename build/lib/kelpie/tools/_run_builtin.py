"""The runners of Letta's built-in tools that need no sandbox: `send_message`, the
core-memory tools (edits land in the session's copy of the blocks), Kelpie's working-memory
tools (an overlay of the agent's keys), and the recall and archival search tools."""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Final

from kelpie.memory import archival_result, archive_id_of
from kelpie.schemas import (
    PASSAGE_PREFIX,
    SEARCH_RESULTS_MAX,
    Passage,
    Tool,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.storage import SEARCHABLE_ROLES, SearchFilter, message_search_text
from kelpie.tools._memory import MEMORY_TOOL_NAMES, run_memory_tool
from kelpie.tools._returned import ToolReturn
from kelpie.tools._session import ToolSession
from kelpie.tools._working_memory import WORKING_MEMORY_TOOL_NAMES, parse_working_memory_call

SEND_MESSAGE_RESULT: Final = "Sent message successfully."
CONVERSATION_SEARCH_LIMIT_DEFAULT: Final = 5
ARCHIVAL_SEARCH_TOP_K_DEFAULT: Final = 10
SEARCH_TOOL_NAMES: Final = frozenset(
    {"conversation_search", "archival_memory_insert", "archival_memory_search"}
)
_DATE_HELP: Final = "Use ISO 8601, e.g. 2024-01-15 or 2024-01-15T14:30."


class MemoryToolRunner:
    """Core-memory tools: pure edits of the session's blocks, committed with the step."""

    names: Final = MEMORY_TOOL_NAMES

    def runs_concurrently(self, tool: Tool) -> bool:
        return False

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        edit = run_memory_tool(tool.name, arguments, session.memory_views())
        if edit.error is not None:
            return ToolReturn(edit.error, ok=False)
        session.apply(edit, call_id)
        return ToolReturn(edit.returned)


class WorkingMemoryToolRunner:
    names: Final = WORKING_MEMORY_TOOL_NAMES

    def runs_concurrently(self, tool: Tool) -> bool:
        return False

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        checked = parse_working_memory_call(tool.name, arguments)
        if isinstance(checked, str):
            return ToolReturn(checked, ok=False)
        returned, ok = await session.working_memory.run(checked)
        return ToolReturn(returned, ok=ok)


class SendMessageRunner:
    names: Final = frozenset({"send_message"})

    def runs_concurrently(self, tool: Tool) -> bool:
        return False

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        return ToolReturn(SEND_MESSAGE_RESULT)


class SearchToolRunner:
    """Recall and archival memory: searches read the store; inserts wait for the commit."""

    names: Final = SEARCH_TOOL_NAMES

    def runs_concurrently(self, tool: Tool) -> bool:
        return False

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        if tool.name == "conversation_search":
            return await _conversation_search(session, arguments)
        if tool.name == "archival_memory_insert":
            return _archival_insert(session, arguments)
        assert tool.name == "archival_memory_search", f"not a search tool: {tool.name}"
        return await _archival_search(session, arguments)


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


async def _conversation_search(session: ToolSession, arguments: Mapping[str, Any]) -> ToolReturn:
    roles = tuple(str(role) for role in arguments.get("roles") or [])
    unknown = [role for role in roles if role not in SEARCHABLE_ROLES]
    if unknown:
        return ToolReturn(f"Unknown roles {unknown}: use assistant, user or tool", ok=False)
    dates = _date_range(arguments, "start_date", "end_date")
    if isinstance(dates, str):
        return ToolReturn(dates, ok=False)
    start_us, end_us = dates
    search = SearchFilter(
        kind="message", scopes=(session.agent.id,), start_us=start_us, end_us=end_us, roles=roles
    )
    run_id = session.run_id
    found = await session.search.search_messages(
        search,
        str(arguments.get("query") or ""),
        _count(arguments.get("limit"), CONVERSATION_SEARCH_LIMIT_DEFAULT),
        # The turn in progress is in the model's context already.
        accept=lambda message: message.run_id != run_id,
    )
    if not found:
        return ToolReturn("No results found.")
    results = [
        {
            "timestamp": message.created_at.isoformat(),
            "role": message.role,
            "content": message_search_text(message) or "",
        }
        for message, _ in found
    ]
    return ToolReturn(json.dumps(results, ensure_ascii=False))


def _archival_insert(session: ToolSession, arguments: Mapping[str, Any]) -> ToolReturn:
    content = arguments.get("content")
    if not isinstance(content, str) or not content:
        return ToolReturn("archival_memory_insert needs a non-empty string 'content'", ok=False)
    now = datetime_from_us(session.env.clock.now_us())
    tags = list(dict.fromkeys(str(tag) for tag in arguments.get("tags") or []))
    # Written with the step's commit, like every other effect of the step.
    session.passages.append(
        Passage(
            id=session.env.entropy.new_id(PASSAGE_PREFIX),
            text=content,
            archive_id=archive_id_of(session.agent.id),
            agent_id=session.agent.id,
            tags=tags,
            created_at=now,
            updated_at=now,
        )
    )
    return ToolReturn(None)


async def _archival_search(session: ToolSession, arguments: Mapping[str, Any]) -> ToolReturn:
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        return ToolReturn("archival_memory_search needs a non-empty string 'query'", ok=False)
    dates = _date_range(arguments, "start_datetime", "end_datetime")
    if isinstance(dates, str):
        return ToolReturn(dates, ok=False)
    start_us, end_us = dates
    search = SearchFilter(
        kind="passage",
        scopes=await session.search.agent_archives(session.agent.id),
        start_us=start_us,
        end_us=end_us,
        tags=tuple(str(tag) for tag in arguments.get("tags") or []),
        match_all_tags=arguments.get("tag_match_mode") == "all",
    )
    found = await session.search.search_passages(
        search, query, _count(arguments.get("top_k"), ARCHIVAL_SEARCH_TOP_K_DEFAULT)
    )
    results = [archival_result(passage).model_dump() for passage, _ in found]
    return ToolReturn(json.dumps(results, ensure_ascii=False))

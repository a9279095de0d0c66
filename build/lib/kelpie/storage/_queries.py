"""Value objects that describe what a list operation asks the store for."""

import dataclasses
from typing import Final, final

PAGE_LIMIT_MAX: Final = 1000


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class Page:
    """A cursor page over (created_at, id). `after`/`before` are ids of the same kind of
    object (for lists keyed otherwise, the key: a working-memory key, a history seq);
    `after` continues in the page's order, `before` goes back against it."""

    limit: int
    ascending: bool = False
    after: str | None = None
    before: str | None = None

    def __post_init__(self) -> None:
        assert 1 <= self.limit <= PAGE_LIMIT_MAX, "page limit out of range"


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class AgentQuery:
    name: str | None = None
    tags: tuple[str, ...] = ()
    match_all_tags: bool = False
    query_text: str | None = None
    include_hidden: bool = False
    # "created_at" or "updated_at": the time column pages are ordered and cursored by.
    order_by: str = "created_at"


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class BlockQuery:
    label: str | None = None
    label_search: str | None = None
    value_search: str | None = None
    description_search: str | None = None
    tags: tuple[str, ...] = ()
    match_all_tags: bool = False
    templates_only: bool = False


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolQuery:
    names: tuple[str, ...] = ()
    tool_ids: tuple[str, ...] = ()
    search: str | None = None
    tool_types: tuple[str, ...] = ()
    exclude_tool_types: tuple[str, ...] = ()


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class RunQuery:
    agent_ids: tuple[str, ...] = ()
    # None: any conversation; "": the default conversation only.
    conversation_id: str | None = None
    statuses: tuple[str, ...] = ()
    background: bool | None = None


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class ConversationQuery:
    agent_id: str | None = None
    # None: archived and not; True/False: only those.
    archived: bool | None = False
    include_hidden: bool = False
    summary_search: str | None = None
    # "created_at" or "last_message_at": the time column pages are ordered by.
    order_by: str = "created_at"


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageQuery:
    agent_id: str
    # Which thread: the agent's own (None), one conversation's, or every thread (all_threads).
    conversation_id: str | None = None
    all_threads: bool = False
    # Messages listed with the thread though stored under another (a fork's shared history).
    shared_ids: tuple[str, ...] = ()


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class ArchiveQuery:
    name: str | None = None
    agent_id: str | None = None  # only archives attached to this agent

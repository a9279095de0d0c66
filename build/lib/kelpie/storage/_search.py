"""What the search operations of the store take and give back. The store keeps the rows
(index rows, FTS5 rows, vectors as bytes); ranking and fusion belong to `kelpie.memory`."""

import dataclasses
import json
from typing import Final, Literal, final

from kelpie.schemas import Message

# Which searchable rows: archival passages (scoped by archive) or recall messages (by agent).
SearchKind = Literal["passage", "message"]
SEARCH_KINDS: Final[tuple[SearchKind, ...]] = ("passage", "message")
# Roles whose messages recall search covers (system messages never are).
SEARCHABLE_ROLES: Final = frozenset({"user", "assistant", "tool"})
# The assistant-message tool whose `message` argument is what the agent said.
_SEND_MESSAGE: Final = "send_message"


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchFilter:
    """Which rows a search may return. Applied before ranking, so the top k are the top k
    of the matching rows."""

    kind: SearchKind
    # Archive ids (passages) or agent ids (messages); empty means every row of the kind.
    scopes: tuple[str, ...] = ()
    start_us: int | None = None  # inclusive
    end_us: int | None = None  # inclusive
    roles: tuple[str, ...] = ()  # messages only; empty means every searchable role
    tags: tuple[str, ...] = ()  # passages only
    match_all_tags: bool = False

    def __post_init__(self) -> None:
        assert self.kind in SEARCH_KINDS, f"unknown search kind {self.kind}"
        assert not (self.tags and self.kind != "passage"), "tags filter only passages"
        assert not (self.roles and self.kind != "message"), "roles filter only messages"


@final
@dataclasses.dataclass(frozen=True)
class VectorRows:
    """Vectors of one scope written after a point, in index-key order. `last_vector_seq` is
    the newest vector write the scope has (whatever its model): what to load after next."""

    seqs: list[int]
    created_at_us: list[int]
    roles: list[str]
    vectors: list[bytes]
    last_vector_seq: int


def message_search_text(message: Message) -> str | None:
    """The text recall search indexes for a message, or None when it is not searchable: what
    the user said, what the agent said (text or send_message), what a tool returned."""
    if message.hidden or message.role not in SEARCHABLE_ROLES:
        return None
    if message.role == "tool":
        return message.tool_return or None
    parts = [message.text] if message.text else []
    if message.role == "assistant":
        parts.extend(
            said for call in message.tool_calls if (said := _said(call.name, call.arguments))
        )
    return "\n".join(parts) or None


def _said(tool_name: str, arguments: str) -> str | None:
    if tool_name != _SEND_MESSAGE:
        return None

    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return None
    said = parsed.get("message") if isinstance(parsed, dict) else None
    return said if isinstance(said, str) and said else None

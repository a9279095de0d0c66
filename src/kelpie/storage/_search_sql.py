"""The SQL both backends share for search: the index table of each kind and a filter as
conditions on its rows. Placeholders are SQLite's `?` (PostgreSQL's store converts them,
as it does `page_clause`'s)."""

import dataclasses
from typing import Final, final

from kelpie.storage._search import SearchFilter, SearchKind
from kelpie.storage._sql import placeholders


@final
@dataclasses.dataclass(frozen=True)
class IndexTable:
    name: str  # passage_index / message_index
    scope: str  # the column a scope id is matched against
    rows: str  # the table of the indexed rows
    row_id: str  # the index's column naming the indexed row


INDEX_TABLES: Final[dict[SearchKind, IndexTable]] = {
    "passage": IndexTable("passage_index", "archive_id", "passages", "passage_id"),
    "message": IndexTable("message_index", "agent_id", "messages", "message_id"),
}


def filter_conditions(search: SearchFilter) -> tuple[list[str], list[object]]:
    """The filter as conditions on the index row `i`, and their parameters."""
    scope = INDEX_TABLES[search.kind].scope
    where: list[str] = []
    params: list[object] = []
    if search.scopes:
        where.append(f"i.{scope} IN ({placeholders(search.scopes)})")
        params.extend(search.scopes)
    if search.start_us is not None:
        where.append("i.created_at >= ?")
        params.append(search.start_us)
    if search.end_us is not None:
        where.append("i.created_at <= ?")
        params.append(search.end_us)
    if search.roles:
        where.append(f"i.role IN ({placeholders(search.roles)})")
        params.extend(search.roles)
    if search.tags:
        tags = sorted(set(search.tags))
        in_scope = f"archive_id IN ({placeholders(search.scopes)}) AND " if search.scopes else ""
        having = f" GROUP BY passage_id HAVING COUNT(*) = {len(tags)}"
        where.append(
            f"i.passage_id IN (SELECT passage_id FROM passage_tags WHERE {in_scope}"
            f"tag IN ({placeholders(tags)}){having if search.match_all_tags else ''})"
        )
        params.extend([*search.scopes, *tags])
    return where, params

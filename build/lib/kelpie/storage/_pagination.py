"""Strict cursor pagination on (time column, id): every item appears on exactly one page,
whatever else shares its timestamp. The time column is created_at unless a list orders by
another indexed one (agents by updated_at)."""

import dataclasses
from typing import final

from kelpie.storage._queries import Page


@final
@dataclasses.dataclass(frozen=True)
class Cursor:
    # The value of the page's time column (created_at, or updated_at) at the cursor item.
    created_at: int
    id: str


@final
@dataclasses.dataclass(frozen=True)
class PageClause:
    where: list[str]
    params: list[object]
    order: str
    # True when rows were fetched against the page's order (paging backwards with
    # `before`) and must be reversed before they are returned.
    reverse: bool


def page_clause(
    alias: str,
    page: Page,
    *,
    after: Cursor | None,
    before: Cursor | None,
    column: str = "created_at",
) -> PageClause:
    key = f"({alias}.{column}, {alias}.id)"
    # In the page's order, "after" is greater when ascending and smaller when descending.
    after_op, before_op = (">", "<") if page.ascending else ("<", ">")
    where: list[str] = []
    params: list[object] = []
    if after is not None:
        where.append(f"{key} {after_op} (?, ?)")
        params.extend((after.created_at, after.id))
    if before is not None:
        where.append(f"{key} {before_op} (?, ?)")
        params.extend((before.created_at, before.id))
    # Paging backwards from `before` alone: fetch the nearest items first, then reverse.
    reverse = before is not None and after is None
    ascending = page.ascending != reverse
    direction = "ASC" if ascending else "DESC"
    order = f"{alias}.{column} {direction}, {alias}.id {direction}"
    return PageClause(where=where, params=params, order=order, reverse=reverse)


def key_page_clause(
    column: str, page: Page, *, after: object | None, before: object | None
) -> PageClause:
    """Cursor paging on one unique column (a working-memory key, a history seq): the
    cursor is that column's value, so it need not name a stored row."""
    after_op, before_op = (">", "<") if page.ascending else ("<", ">")
    where: list[str] = []
    params: list[object] = []
    if after is not None:
        where.append(f"{column} {after_op} ?")
        params.append(after)
    if before is not None:
        where.append(f"{column} {before_op} ?")
        params.append(before)
    reverse = before is not None and after is None
    direction = "ASC" if page.ascending != reverse else "DESC"
    return PageClause(where=where, params=params, order=f"{column} {direction}", reverse=reverse)

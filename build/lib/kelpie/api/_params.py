"""Query parameters shared by list endpoints: cursor paging and `include`."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Query

from kelpie.errors import InvalidInput
from kelpie.storage import PAGE_LIMIT_MAX, Page

Order = Literal["asc", "desc"]
Ascending = Annotated[bool | None, Query(description="Legacy form of `order`")]
Limit = Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)]


def page_of(
    *,
    limit: int,
    order: Order,
    after: str | None,
    before: str | None,
    ascending: bool | None = None,
) -> Page:
    if after is not None and after == before:
        raise InvalidInput("after and before must differ")
    is_ascending = ascending if ascending is not None else order == "asc"
    return Page(limit=limit, ascending=is_ascending, after=after, before=before)


def page_params(
    limit_default: int,
    *,
    order_default: Order = "desc",
    cursor: str = "id",
    ordered_by: str = "created_at",
) -> Callable[..., Awaitable[Page]]:
    """The cursor parameters of a list endpoint, as a dependency (async: FastAPI would run a
    sync one in a thread). Lists keyed otherwise name their `cursor` and `ordered_by`."""
    first = "newest" if order_default == "desc" else "oldest"
    if ordered_by != "created_at":
        first = "highest" if order_default == "desc" else "lowest"
    after_param = Annotated[
        str | None, Query(description=f"Return items after this {cursor}, in `order`")
    ]
    before_param = Annotated[
        str | None, Query(description=f"Return items before this {cursor}, in `order`")
    ]
    order_param = Annotated[
        Order, Query(description=f"{ordered_by} order: {first} first by default")
    ]

    async def dependency(
        after: after_param = None,
        before: before_param = None,
        limit: Limit = limit_default,
        order: order_param = order_default,
        ascending: Ascending = None,
    ) -> Page:
        return page_of(limit=limit, order=order, after=after, before=before, ascending=ascending)

    return dependency

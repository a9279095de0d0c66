"""Query parameters shared by list endpoints: cursor paging and `include`."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Query

from kelpie.errors import InvalidInput
from kelpie.storage import PAGE_LIMIT_MAX, Page

Order = Literal["asc", "desc"]
After = Annotated[str | None, Query(description="Return items after this id, in `order`")]
Before = Annotated[str | None, Query(description="Return items before this id, in `order`")]
OrderParam = Annotated[Order, Query(description="created_at order: newest first by default")]
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


def page_params(limit_default: int) -> Callable[..., Awaitable[Page]]:
    """The cursor parameters of a list endpoint, as a dependency (async: FastAPI would run a
    sync one in a thread)."""

    async def dependency(
        after: After = None,
        before: Before = None,
        limit: Limit = limit_default,
        order: OrderParam = "desc",
        ascending: Ascending = None,
    ) -> Page:
        return page_of(limit=limit, order=order, after=after, before=before, ascending=ascending)

    return dependency

"""Letta's web tools, `fetch_webpage` and `web_search`, over the `Web` seam.

They read the web and nothing of the agent's, so calls run beside the step's others. What the
model gets is Letta's: the page as markdown or text, and search results as JSON (query, and
per result title, url, published_date, author, then summary, highlights and text when the
service gives them). Every failure, bad arguments included, is an error return saying what
to do differently; nothing here raises for the model's mistakes."""

import json
from collections.abc import Sequence
from typing import Any, Final

from kelpie.schemas import Tool
from kelpie.tools._base_tools import WEB_SEARCH_CATEGORIES
from kelpie.tools._returned import ToolReturn
from kelpie.tools._session import ToolSession
from kelpie.web import (
    FETCH_BYTES_MAX,
    FETCH_TIMEOUT_S,
    SEARCH_RESULTS_DEFAULT,
    SEARCH_RESULTS_MAX,
    FetchedPage,
    SearchOptions,
    SearchResult,
    Web,
    WebError,
)

# A page's text, at most, in characters; the tool's own return_char_limit (Letta's default
# 50,000) is respected too, leaving room for the note that says the text was cut.
FETCH_TEXT_CHARS_MAX: Final = 40_000
TRUNCATION_NOTE_CHARS_MAX: Final = 200
NO_SEARCH_PROVIDER: Final = (
    "web_search cannot run: no search service is configured on this Kelpie server. Its "
    "operator sets KELPIE_WEB_SEARCH_URL (the base URL of a SearXNG instance with the JSON "
    "format enabled) or EXA_API_KEY (an Exa API key)."
)
NO_TEXT_NOTE: Final = (
    "This server's search service returns no page text: call fetch_webpage on a result's "
    "url to read it."
)


class FetchWebpageRunner:
    def __init__(
        self,
        web: Web,
        *,
        max_bytes: int = FETCH_BYTES_MAX,
        timeout_s: float = FETCH_TIMEOUT_S,
        text_chars_max: int = FETCH_TEXT_CHARS_MAX,
    ) -> None:
        assert text_chars_max > 0, text_chars_max
        self._web = web
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._text_chars_max = text_chars_max

    def runs_concurrently(self, tool: Tool) -> bool:
        """A fetch touches no agent state: it may run beside the step's other calls."""
        return True

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        url = arguments.get("url")
        if not isinstance(url, str) or not url.strip():
            return ToolReturn(
                "fetch_webpage needs `url`: the address of the page, a string such as "
                "'https://example.com/page'",
                ok=False,
            )
        try:
            page = await self._web.fetch(
                url.strip(), max_bytes=self._max_bytes, timeout_s=self._timeout_s
            )
        except WebError as error:
            return ToolReturn(f"Error fetching the page: {error}", ok=False)
        chars_max = min(self._text_chars_max, tool.return_char_limit - TRUNCATION_NOTE_CHARS_MAX)
        return ToolReturn(page_text(url.strip(), page, max(chars_max, 1), self._max_bytes))


def page_text(requested: str, page: FetchedPage, chars_max: int, bytes_max: int) -> str:
    """The page's text, cut at `chars_max` characters, with notes on what was left out and
    on where a redirect led."""
    notes = []
    if page.url != requested:
        notes.append(f"[Redirected to {page.url}]")
    text = page.text.strip()
    if not text:
        return "\n\n".join([*notes, f"The page at {page.url} has no readable text."])
    body = [text[:chars_max]]
    if len(text) > chars_max:
        body.append(
            f"[Truncated: the page's text is {len(text)} characters; only the first "
            f"{chars_max} are shown.]"
        )
    elif page.truncated:
        body.append(
            f"[Truncated: the page is larger than {bytes_max} bytes; only its start was read.]"
        )
    return "\n\n".join([*notes, *body])


class WebSearchRunner:
    def __init__(self, web: Web) -> None:
        self._web = web

    def runs_concurrently(self, tool: Tool) -> bool:
        """A search touches no agent state: it may run beside the step's other calls."""
        return True

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        parsed = search_call(arguments)
        if isinstance(parsed, str):
            return ToolReturn(parsed, ok=False)
        query, options = parsed
        if self._web.search_provider is None:
            return ToolReturn(NO_SEARCH_PROVIDER, ok=False)
        try:
            results = await self._web.search(query, options)
        except WebError as error:
            return ToolReturn(f"Error searching the web: {error}", ok=False)
        return ToolReturn(search_json(query, results, include_text=options.include_text))


def search_call(arguments: dict[str, Any]) -> tuple[str, SearchOptions] | str:
    """The query and options of a web_search call, or the error text for its arguments.
    A null optional argument counts as absent (models send them)."""
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        return "web_search needs `query`: what to search for, a non-empty string"
    num_results = arguments.get("num_results")
    if num_results is None:
        num_results = SEARCH_RESULTS_DEFAULT
    elif isinstance(num_results, bool) or not isinstance(num_results, int):
        return f"web_search: `num_results` must be an integer from 1 to {SEARCH_RESULTS_MAX}"
    category = arguments.get("category")
    if category is not None and category not in WEB_SEARCH_CATEGORIES:
        return f"web_search: `category` must be one of {', '.join(WEB_SEARCH_CATEGORIES)}"
    include_text = arguments.get("include_text")
    if include_text is not None and not isinstance(include_text, bool):
        return "web_search: `include_text` must be true or false"
    domains: dict[str, Sequence[str]] = {}
    for name in ("include_domains", "exclude_domains"):
        value = arguments.get(name)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"web_search: `{name}` must be a list of domain names (strings)"
        domains[name] = tuple(v.strip() for v in value if v.strip())
    texts: dict[str, str | None] = {}
    for name in ("start_published_date", "end_published_date", "user_location"):
        value = arguments.get(name)
        if value is not None and not isinstance(value, str):
            return f"web_search: `{name}` must be a string"
        texts[name] = value.strip() or None if value is not None else None
    options = SearchOptions(
        # Letta clamps rather than refuses.
        num_results=min(max(num_results, 1), SEARCH_RESULTS_MAX),
        category=category,
        include_text=bool(include_text),
        include_domains=domains["include_domains"],
        exclude_domains=domains["exclude_domains"],
        start_published_date=texts["start_published_date"],
        end_published_date=texts["end_published_date"],
        user_location=texts["user_location"],
    )
    return query.strip(), options


def search_json(query: str, results: Sequence[SearchResult], *, include_text: bool) -> str:
    """Letta's web_search return: `{"query", "results": [...]}` as indented JSON."""
    shaped = []
    for result in results:
        item: dict[str, Any] = {
            "title": result.title,
            "url": result.url,
            "published_date": result.published_date,
            "author": result.author,
        }
        if include_text and result.text:
            item["text"] = result.text
        if result.highlights:
            item["highlights"] = list(result.highlights)
        if result.summary:
            item["summary"] = result.summary
        shaped.append(item)
    answer: dict[str, Any] = {"query": query, "results": shaped}
    if include_text and results and not any(result.text for result in results):
        answer["note"] = NO_TEXT_NOTE
    return json.dumps(answer, indent=2, ensure_ascii=False)

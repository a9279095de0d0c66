"""fetch_webpage and web_search as the registry runs them, over a recording fake `Web`: the
registry picks them by name, bad arguments are error returns (never exceptions), a page is
cut at its character limit with a note, and search results come back as Letta's JSON."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from typing import Any, Final, cast

import pytest

from kelpie.env import Config, Entropy, Env, SystemClock
from kelpie.llm import ToolCall
from kelpie.schemas import Tool
from kelpie.tools import BASE_TOOLS_BY_NAME, ToolReturn, ToolSession, default_registry
from kelpie.tools._run_web import (
    FETCH_TEXT_CHARS_MAX,
    NO_SEARCH_PROVIDER,
    NO_TEXT_NOTE,
    FetchWebpageRunner,
    WebSearchRunner,
)
from kelpie.web import (
    FETCH_BYTES_MAX,
    FETCH_TIMEOUT_S,
    SEARCH_RESULTS_MAX,
    FetchedPage,
    SearchOptions,
    SearchResult,
    WebError,
    WebRefused,
)

NOW: Final = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
PAGE_URL: Final = "https://kelp.example.org/forests"
# The runners never touch the session: they read the web and nothing of the agent's.
NO_SESSION: Final = cast(ToolSession, None)


@dataclasses.dataclass
class FakeWeb:
    """Answers with `page` / `results` (or raises `error`) and records each call."""

    search_provider: str | None = "fake"
    page: FetchedPage | None = None
    results: list[SearchResult] = dataclasses.field(default_factory=list)
    error: WebError | None = None
    fetches: list[tuple[str, int, float]] = dataclasses.field(default_factory=list)
    searches: list[tuple[str, SearchOptions]] = dataclasses.field(default_factory=list)

    async def fetch(self, url: str, *, max_bytes: int, timeout_s: float) -> FetchedPage:
        self.fetches.append((url, max_bytes, timeout_s))
        if self.error is not None:
            raise self.error
        assert self.page is not None, "the test gave no page"
        return self.page

    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        self.searches.append((query, options))
        if self.error is not None:
            raise self.error
        return self.results


def _tool(name: str, **fields: Any) -> Tool:
    builtin = BASE_TOOLS_BY_NAME[name]
    return Tool(
        id="tool-00000000-0000-4000-8000-000000000009",
        name=name,
        tool_type=builtin.tool_type,
        json_schema=builtin.json_schema,
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


def _page(text: str, *, url: str = PAGE_URL, truncated: bool = False) -> FetchedPage:
    return FetchedPage(
        url=url, status=200, content_type="text/html", text=text, truncated=truncated
    )


def _fetch(runner: FetchWebpageRunner, arguments: dict[str, Any], **tool: Any) -> ToolReturn:
    return asyncio.run(runner.run(NO_SESSION, _tool("fetch_webpage", **tool), arguments, "c1"))


def _search(runner: WebSearchRunner, arguments: dict[str, Any]) -> ToolReturn:
    return asyncio.run(runner.run(NO_SESSION, _tool("web_search"), arguments, "c1"))


class TestRegistry:
    def test_the_default_registry_runs_both_tools_by_name_concurrently(self) -> None:
        web = FakeWeb(page=_page("Kelp."))
        anything = cast(Any, object())
        env = Env(
            clock=SystemClock(),
            entropy=Entropy(1),
            config=Config(),
            store=anything,
            models=anything,
            llm=anything,
            embedder=anything,
            sandbox=anything,
            mcp=anything,
            web=web,
        )
        registry = default_registry(env)
        fetch_tool, search_tool = _tool("fetch_webpage"), _tool("web_search")
        assert isinstance(registry.runner_for(fetch_tool), FetchWebpageRunner)
        assert isinstance(registry.runner_for(search_tool), WebSearchRunner)
        assert registry.runs_concurrently(fetch_tool)
        assert registry.runs_concurrently(search_tool)
        call = ToolCall(id="c1", name="fetch_webpage", arguments=json.dumps({"url": PAGE_URL}))
        outcome = asyncio.run(registry.execute(NO_SESSION, call, fetch_tool))
        assert (outcome.returned, outcome.ok) == ("Kelp.", True)
        assert web.fetches == [(PAGE_URL, FETCH_BYTES_MAX, FETCH_TIMEOUT_S)]


class TestFetchWebpage:
    def test_the_page_text_is_the_return(self) -> None:
        web = FakeWeb(page=_page("# Kelp\n\nGiant kelp grows fast."))
        returned = _fetch(FetchWebpageRunner(web), {"url": f"  {PAGE_URL} "})
        assert returned == ToolReturn("# Kelp\n\nGiant kelp grows fast.")
        assert [url for url, _, _ in web.fetches] == [PAGE_URL]

    @pytest.mark.parametrize(
        "arguments", [{}, {"url": ""}, {"url": "  "}, {"url": 42}, {"url": None}]
    )
    def test_a_missing_or_bad_url_is_an_error_return(self, arguments: dict[str, Any]) -> None:
        web = FakeWeb(page=_page("unused"))
        returned = _fetch(FetchWebpageRunner(web), arguments)
        assert not returned.ok
        assert returned.returned is not None
        assert "needs `url`" in returned.returned
        assert web.fetches == []

    def test_a_refused_or_failed_fetch_is_an_error_return_with_the_reason(self) -> None:
        refused = FakeWeb(error=WebRefused("Refused to fetch 'ftp://x/': only http and https"))
        returned = _fetch(FetchWebpageRunner(refused), {"url": "ftp://x/"})
        assert returned == ToolReturn(
            "Error fetching the page: Refused to fetch 'ftp://x/': only http and https", ok=False
        )
        failed = FakeWeb(error=WebError("Timed out"))
        assert _fetch(FetchWebpageRunner(failed), {"url": PAGE_URL}).ok is False

    def test_long_text_is_cut_at_the_limit_with_a_note(self) -> None:
        text = "k" * 150
        runner = FetchWebpageRunner(FakeWeb(page=_page(text)), text_chars_max=100)
        returned = _fetch(runner, {"url": PAGE_URL})
        assert returned.ok
        assert returned.returned is not None
        kept, note = returned.returned.split("\n\n")
        assert kept == "k" * 100
        assert note == (
            "[Truncated: the page's text is 150 characters; only the first 100 are shown.]"
        )

    def test_the_default_limit_keeps_the_note_within_the_tools_return_limit(self) -> None:
        text = "k" * (FETCH_TEXT_CHARS_MAX + 10)
        runner = FetchWebpageRunner(FakeWeb(page=_page(text)))
        returned = _fetch(runner, {"url": PAGE_URL})
        assert returned.returned is not None
        assert returned.returned.startswith("k" * FETCH_TEXT_CHARS_MAX + "\n\n[Truncated")
        small = _fetch(runner, {"url": PAGE_URL}, return_char_limit=1000)
        assert small.returned is not None
        assert len(small.returned) <= 1000
        assert "[Truncated" in small.returned

    def test_a_body_cut_at_the_byte_limit_says_so(self) -> None:
        runner = FetchWebpageRunner(FakeWeb(page=_page("start", truncated=True)), max_bytes=1000)
        returned = _fetch(runner, {"url": PAGE_URL})
        assert returned.returned == (
            "start\n\n[Truncated: the page is larger than 1000 bytes; only its start was read.]"
        )

    def test_a_redirect_is_named_and_an_empty_page_said_to_be_empty(self) -> None:
        moved = FakeWeb(page=_page("Here.", url="https://kelp.example.org/new"))
        assert _fetch(FetchWebpageRunner(moved), {"url": PAGE_URL}).returned == (
            "[Redirected to https://kelp.example.org/new]\n\nHere."
        )
        empty = FakeWeb(page=_page("  \n"))
        assert _fetch(FetchWebpageRunner(empty), {"url": PAGE_URL}) == ToolReturn(
            f"The page at {PAGE_URL} has no readable text."
        )


RESULT: Final = SearchResult(
    title="Kelp forests",
    url=PAGE_URL,
    published_date="2024-05-01",
    author="A. Diver",
    summary="An overview.",
    highlights=("Kelp grows fast.",),
    text="Full text.",
)


class TestWebSearch:
    def test_results_are_letta_json_with_the_query(self) -> None:
        web = FakeWeb(results=[RESULT, SearchResult(title="Bare", url="https://b.example/")])
        returned = _search(WebSearchRunner(web), {"query": " kelp "})
        assert returned.ok
        assert returned.returned is not None
        assert json.loads(returned.returned) == {
            "query": "kelp",
            "results": [
                {
                    "title": "Kelp forests",
                    "url": PAGE_URL,
                    "published_date": "2024-05-01",
                    "author": "A. Diver",
                    "highlights": ["Kelp grows fast."],
                    "summary": "An overview.",
                },
                {
                    "title": "Bare",
                    "url": "https://b.example/",
                    "published_date": None,
                    "author": None,
                },
            ],
        }
        [(query, options)] = web.searches
        assert (query, options) == ("kelp", SearchOptions())

    def test_the_options_reach_the_web_and_text_is_returned_when_asked(self) -> None:
        web = FakeWeb(results=[RESULT])
        arguments = {
            "query": "kelp",
            "num_results": 3,
            "category": "news",
            "include_text": True,
            "include_domains": ["example.org"],
            "exclude_domains": None,
            "start_published_date": "2020-01-01",
            "end_published_date": None,
            "user_location": "US",
        }
        returned = _search(WebSearchRunner(web), arguments)
        assert returned.returned is not None
        assert json.loads(returned.returned)["results"][0]["text"] == "Full text."
        assert web.searches == [
            (
                "kelp",
                SearchOptions(
                    num_results=3,
                    category="news",
                    include_text=True,
                    include_domains=("example.org",),
                    start_published_date="2020-01-01",
                    user_location="US",
                ),
            )
        ]

    def test_asking_for_text_from_a_service_without_it_adds_a_note(self) -> None:
        web = FakeWeb(results=[SearchResult(title="t", url=PAGE_URL)])
        returned = _search(WebSearchRunner(web), {"query": "kelp", "include_text": True})
        assert returned.returned is not None
        assert json.loads(returned.returned)["note"] == NO_TEXT_NOTE

    @pytest.mark.parametrize(("asked", "sent"), [(0, 1), (-5, 1), (500, SEARCH_RESULTS_MAX)])
    def test_num_results_is_clamped_like_lettas(self, asked: int, sent: int) -> None:
        web = FakeWeb()
        assert _search(WebSearchRunner(web), {"query": "kelp", "num_results": asked}).ok
        assert web.searches[0][1].num_results == sent

    @pytest.mark.parametrize(
        ("arguments", "named"),
        [
            ({}, "`query`"),
            ({"query": "   "}, "`query`"),
            ({"query": 7}, "`query`"),
            ({"query": "k", "num_results": "5"}, "`num_results`"),
            ({"query": "k", "num_results": True}, "`num_results`"),
            ({"query": "k", "category": "recipes"}, "`category`"),
            ({"query": "k", "include_text": "yes"}, "`include_text`"),
            ({"query": "k", "include_domains": "example.org"}, "`include_domains`"),
            ({"query": "k", "exclude_domains": [1]}, "`exclude_domains`"),
            ({"query": "k", "start_published_date": 2020}, "`start_published_date`"),
        ],
    )
    def test_bad_arguments_are_error_returns_naming_the_argument(
        self, arguments: dict[str, Any], named: str
    ) -> None:
        web = FakeWeb()
        returned = _search(WebSearchRunner(web), arguments)
        assert not returned.ok
        assert returned.returned is not None
        assert named in returned.returned
        assert web.searches == []

    def test_no_search_service_is_an_error_telling_the_operator_what_to_set(self) -> None:
        web = FakeWeb(search_provider=None)
        returned = _search(WebSearchRunner(web), {"query": "kelp"})
        assert returned == ToolReturn(NO_SEARCH_PROVIDER, ok=False)
        assert "KELPIE_WEB_SEARCH_URL" in NO_SEARCH_PROVIDER
        assert "EXA_API_KEY" in NO_SEARCH_PROVIDER
        assert web.searches == []

    def test_a_failed_search_is_an_error_return(self) -> None:
        web = FakeWeb(error=WebError("SearXNG at http://s answered HTTP 500: boom"))
        assert _search(WebSearchRunner(web), {"query": "kelp"}) == ToolReturn(
            "Error searching the web: SearXNG at http://s answered HTTP 500: boom", ok=False
        )

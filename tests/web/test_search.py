"""HttpWeb.search against fake SearXNG and Exa endpoints on loopback: the query reaches the
service in its API's shape, the answer comes back as SearchResults, filters the service lacks
are applied to its results, and a failing service is an error saying which and why."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Final

import pytest

from kelpie.web import HttpWeb, SearchOptions, SearchResult, WebError

from ._support import EXA_RESULTS, SEARXNG_RESULTS, Site

SHORT_TIMEOUT_S: Final = 0.5
TIMED_OUT_WITHIN_S: Final = 3.0


def search(web: HttpWeb, query: str, **options: object) -> list[SearchResult]:
    return asyncio.run(web.search(query, SearchOptions(**options)))  # type: ignore[arg-type]


class TestProvider:
    def test_no_service_configured_means_no_provider(self) -> None:
        web = HttpWeb()
        assert web.search_provider is None
        with pytest.raises(WebError, match="No search service"):
            search(web, "kelp")

    def test_searxng_is_chosen_over_exa_when_both_are_set(self) -> None:
        assert HttpWeb(exa_api_key="k").search_provider == "exa"
        both = HttpWeb(searxng_url="http://127.0.0.1:1", exa_api_key="k")
        assert both.search_provider == "searxng"


class TestSearxng:
    def test_the_query_reaches_searxng_and_its_results_come_back_shaped(self, site: Site) -> None:
        web = HttpWeb(searxng_url=site.url("/searx/"))
        results = search(web, "kelp forests")
        [request] = site.seen()
        assert (request.method, request.path) == ("GET", "/searx/search")
        assert request.query == {"q": ["kelp forests"], "format": ["json"]}
        assert results == [
            SearchResult(
                title=item["title"] or "",
                url=item["url"] or "",
                published_date=item["publishedDate"],
                summary=item["content"],
            )
            for item in SEARXNG_RESULTS
        ]

    def test_num_results_cuts_the_list(self, site: Site) -> None:
        results = search(HttpWeb(searxng_url=site.base_url), "kelp", num_results=2)
        assert [r.url for r in results] == [item["url"] for item in SEARXNG_RESULTS[:2]]

    def test_news_asks_searxng_for_its_news_category_and_one_domain_uses_site(
        self, site: Site
    ) -> None:
        web = HttpWeb(searxng_url=site.base_url)
        results = search(web, "kelp", category="news", include_domains=["example.com"])
        [request] = site.seen()
        assert request.query["categories"] == ["news"]
        assert request.query["q"] == ["kelp site:example.com"]
        # Filtered here as well: the engines may not understand `site:`.
        assert [r.url for r in results] == ["https://news.example.com/kelp-decline"]

    def test_domains_and_dates_filter_the_results(self, site: Site) -> None:
        web = HttpWeb(searxng_url=site.base_url)
        excluded = search(web, "kelp", exclude_domains=["otters.example.net"])
        assert [r.title for r in excluded] == ["Kelp forests", "Kelp decline"]
        # The undated result stays: nothing says it is outside the range.
        recent = search(web, "kelp", start_published_date="2020-01-01")
        assert [r.title for r in recent] == ["Kelp forests", "Kelp decline"]
        old = search(web, "kelp", end_published_date="2020-01-01T00:00:00Z")
        assert [r.title for r in old] == ["Kelp decline", "Sea otters"]

    def test_searxng_without_the_json_format_is_an_error_with_the_fix(self, site: Site) -> None:
        with pytest.raises(WebError) as caught:
            search(HttpWeb(searxng_url=site.url("/forbidden")), "kelp")
        message = str(caught.value)
        assert "SearXNG" in message
        assert "HTTP 403" in message
        assert "settings.yml" in message

    def test_a_searxng_that_does_not_answer_is_given_up_on_in_time(self, site: Site) -> None:
        web = HttpWeb(searxng_url=site.url("/stalled"), search_timeout_s=SHORT_TIMEOUT_S)
        started = time.monotonic()
        with pytest.raises(WebError, match=r"did not answer within 0\.5 s"):
            search(web, "kelp")
        assert time.monotonic() - started < TIMED_OUT_WITHIN_S


class TestExa:
    def test_the_request_has_exas_shape_and_the_key_in_its_header(self, site: Site) -> None:
        web = HttpWeb(exa_api_key="exa-key-1", exa_url=site.url("/exa/search"))
        results = search(
            web,
            "kelp",
            num_results=3,
            category="research paper",
            include_text=True,
            include_domains=["example.org"],
            start_published_date="2020-01-01",
            user_location="US",
        )
        [request] = site.seen()
        assert (request.method, request.path) == ("POST", "/exa/search")
        assert request.headers["x-api-key"] == "exa-key-1"
        assert request.headers["content-type"] == "application/json"
        body = json.loads(request.body)
        assert body["query"] == "kelp"
        assert body["numResults"] == 3
        assert body["type"] == "auto"
        assert body["category"] == "research paper"
        assert body["includeDomains"] == ["example.org"]
        assert body["startPublishedDate"] == "2020-01-01"
        assert body["userLocation"] == "US"
        assert "excludeDomains" not in body
        assert body["contents"]["text"] == {"maxCharacters": 10_000}
        assert body["contents"]["highlights"]["query"] == "kelp"
        assert "kelp" in body["contents"]["summary"]["query"]
        [expected] = EXA_RESULTS
        assert results == [
            SearchResult(
                title="Kelp forests",
                url="https://kelp.example.org/forests",
                published_date="2024-05-01T00:00:00.000Z",
                author="A. Diver",
                summary="An overview of kelp forests.",
                highlights=("Kelp grows fast.", "Otters help."),
                text="Full text about kelp.",
            )
        ]
        assert expected["url"] == results[0].url

    def test_without_include_text_no_text_is_asked_for_or_kept(self, site: Site) -> None:
        web = HttpWeb(exa_api_key="k", exa_url=site.url("/exa/search"))
        [result] = search(web, "kelp")
        [request] = site.seen()
        assert "text" not in json.loads(request.body)["contents"]
        assert result.text is None

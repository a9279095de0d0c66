"""SimWeb: the simulator's web is a function of the URL or query, runs on the simulation
loop (no sockets, DNS or threads), and keeps the rules that need no network."""

import pytest

from kelpie.sim import run_simulation
from kelpie.sim._web import SIM_SEARCH_RESULTS_MAX, SimWeb, sim_page_text
from kelpie.web import FetchedPage, SearchOptions, SearchResult, WebRefused

URL = "https://kelp.example.org/forests"


def _fetch(url: str, max_bytes: int = 1024) -> FetchedPage:
    async def main() -> FetchedPage:
        return await SimWeb().fetch(url, max_bytes=max_bytes, timeout_s=1.0)

    return run_simulation(main, seed=1)


def _search(query: str, options: SearchOptions) -> list[SearchResult]:
    async def main() -> list[SearchResult]:
        return await SimWeb().search(query, options)

    return run_simulation(main, seed=2)


def test_a_page_is_the_same_for_the_same_url_and_differs_between_urls() -> None:
    page = _fetch(URL)
    assert page == _fetch(URL)
    assert page.text == sim_page_text(URL)
    assert page.text.startswith("# kelp.example.org/forests")
    assert _fetch(URL + "/other").text != page.text
    assert (page.url, page.status, page.truncated) == (URL, 200, False)


def test_the_byte_limit_cuts_the_page() -> None:
    page = _fetch(URL, max_bytes=10)
    assert page.truncated
    assert page.text == sim_page_text(URL)[:10]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://kelp.example.org/", "kelp"])
def test_schemes_other_than_http_and_https_are_refused(url: str) -> None:
    with pytest.raises(WebRefused, match="only http and https"):
        _fetch(url)


def test_search_results_follow_the_query_and_the_count_asked() -> None:
    results = _search("kelp", SearchOptions(num_results=2))
    assert [r.title for r in results] == ["kelp (1)", "kelp (2)"]
    assert results == _search("kelp", SearchOptions(num_results=2))
    assert results[0].url != _search("otters", SearchOptions(num_results=1))[0].url
    assert len(_search("kelp", SearchOptions(num_results=50))) == SIM_SEARCH_RESULTS_MAX
    assert all(r.text is None for r in results)
    assert all(r.text for r in _search("kelp", SearchOptions(include_text=True)))

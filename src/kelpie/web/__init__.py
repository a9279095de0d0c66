"""The web: fetching a page as readable text and searching, behind the `Web` protocol.

`HttpWeb` is the production web over httpx: a fetch goes to http(s) URLs on public addresses
only (each redirect hop checked again, the connection made to the checked address), reads at
most a byte limit within a time limit, and turns HTML into markdown with trafilatura; a search
asks the configured SearXNG instance or Exa. The simulator brings its own `Web`. This package
imports nothing else of Kelpie."""

from kelpie.web._http import HttpWeb
from kelpie.web._types import (
    EXA_SEARCH_URL,
    FETCH_BYTES_MAX,
    FETCH_REDIRECTS_MAX,
    FETCH_TIMEOUT_S,
    SEARCH_BYTES_MAX,
    SEARCH_RESULTS_DEFAULT,
    SEARCH_RESULTS_MAX,
    SEARCH_TEXT_CHARS_MAX,
    SEARCH_TIMEOUT_S,
    FetchedPage,
    SearchOptions,
    SearchResult,
    Web,
    WebError,
    WebRefused,
)

__all__ = [
    "EXA_SEARCH_URL",
    "FETCH_BYTES_MAX",
    "FETCH_REDIRECTS_MAX",
    "FETCH_TIMEOUT_S",
    "SEARCH_BYTES_MAX",
    "SEARCH_RESULTS_DEFAULT",
    "SEARCH_RESULTS_MAX",
    "SEARCH_TEXT_CHARS_MAX",
    "SEARCH_TIMEOUT_S",
    "FetchedPage",
    "HttpWeb",
    "SearchOptions",
    "SearchResult",
    "Web",
    "WebError",
    "WebRefused",
]

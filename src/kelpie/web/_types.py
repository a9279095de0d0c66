"""The web effect: what the server needs from the World Wide Web (fetch one page as readable
text, ask a search service), behind a protocol so the simulator brings a web without sockets.

A fetch is the model's request, so it is policed (scheme, addresses, size, time); a search
goes to a service the operator configured, so only its size and time are limited."""

import dataclasses
from collections.abc import Sequence
from typing import Final, Protocol

# A page's body is read up to this many bytes (after content decoding); the rest is not read.
FETCH_BYTES_MAX: Final = 5 * 1024 * 1024
# The whole fetch, redirects and body included, must be done within this.
FETCH_TIMEOUT_S: Final = 20.0
# Redirects followed before the fetch gives up (each hop is checked like the first URL).
FETCH_REDIRECTS_MAX: Final = 10
# A search service's answer: at most this many bytes, within this long.
SEARCH_BYTES_MAX: Final = 5 * 1024 * 1024
SEARCH_TIMEOUT_S: Final = 30.0
# Results a search may ask for (Letta's web_search range is 1 to 100).
SEARCH_RESULTS_MAX: Final = 100
SEARCH_RESULTS_DEFAULT: Final = 10
# A result's full text (Exa's `include_text`), at most; longer text is cut by the service.
SEARCH_TEXT_CHARS_MAX: Final = 10_000
EXA_SEARCH_URL: Final = "https://api.exa.ai/search"


class WebError(Exception):
    """A fetch or search that failed; the message says why in one sentence a model (and the
    operator reading its tool returns) can act on."""


class WebRefused(WebError):
    """A fetch refused before any byte was sent: a scheme other than http/https, an address
    that is not public, or content that is not text."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FetchedPage:
    """A page as readable text: markdown for HTML, the body itself for text and JSON.

    `url` is where the page was found (after redirects); `truncated` says the body was longer
    than the byte limit and only its start was read."""

    url: str
    status: int
    content_type: str
    text: str
    truncated: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """Letta's web_search parameters. A service that cannot apply one (SearXNG has no date
    range) gets the results filtered where the result carries what is needed."""

    num_results: int = SEARCH_RESULTS_DEFAULT
    category: str | None = None
    include_text: bool = False
    include_domains: Sequence[str] = ()
    exclude_domains: Sequence[str] = ()
    start_published_date: str | None = None
    end_published_date: str | None = None
    user_location: str | None = None

    def __post_init__(self) -> None:
        assert 1 <= self.num_results <= SEARCH_RESULTS_MAX, self.num_results


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchResult:
    """One hit, in the fields Letta's web_search returned (absent ones are None or empty)."""

    title: str
    url: str
    published_date: str | None = None
    author: str | None = None
    summary: str | None = None
    highlights: tuple[str, ...] = ()
    text: str | None = None


class Web(Protocol):
    @property
    def search_provider(self) -> str | None:
        """The search service `search` asks (e.g. "searxng", "exa"); None when the operator
        configured none, and `search` would fail."""
        ...

    async def fetch(self, url: str, *, max_bytes: int, timeout_s: float) -> FetchedPage:
        """The page at `url` as readable text. Raises WebRefused (scheme, address, binary
        content) or WebError (unreachable, HTTP error status, timed out)."""
        ...

    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        """At most `options.num_results` hits for `query`, best first. Raises WebError."""
        ...

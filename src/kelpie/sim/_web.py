"""The simulation's web: `SimWeb` stands in for `HttpWeb` (no sockets, no DNS, no threads:
the simulator's loop runs none of them). A page and a search's results are a function of the
URL or query alone, so a replayed seed sees the same web.

It keeps the production rules that do not need the network: only http and https URLs are
fetched, and a body is cut at the byte limit the caller gives."""

import hashlib
import urllib.parse
from typing import Final

from kelpie.web import FetchedPage, SearchOptions, SearchResult, WebRefused

SIM_SEARCH_PROVIDER: Final = "sim"
# Hits a simulated search returns at most, whatever was asked.
SIM_SEARCH_RESULTS_MAX: Final = 5
SIM_RESULTS_HOST: Final = "web.sim"
DIGEST_CHARS: Final = 12


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def sim_page_text(url: str) -> str:
    """The markdown of the simulated page at `url`."""
    parts = urllib.parse.urlsplit(url)
    return (
        f"# {parts.hostname}{parts.path or '/'}\n\n"
        f"Simulated page {_digest(url)}: the content of {url}."
    )


class SimWeb:
    search_provider: str | None = SIM_SEARCH_PROVIDER

    def __init__(self) -> None:
        self.fetched: list[str] = []
        self.searched: list[str] = []

    async def fetch(self, url: str, *, max_bytes: int, timeout_s: float) -> FetchedPage:
        assert max_bytes > 0, max_bytes
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebRefused(f"Refused to fetch '{url}': only http and https URLs are fetched")
        self.fetched.append(url)
        body = sim_page_text(url).encode()
        truncated = len(body) > max_bytes
        return FetchedPage(
            url=url,
            status=200,
            content_type="text/markdown",
            text=body[:max_bytes].decode(errors="ignore"),
            truncated=truncated,
        )

    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        self.searched.append(query)
        digest = _digest(query)
        count = min(options.num_results, SIM_SEARCH_RESULTS_MAX)
        return [
            SearchResult(
                title=f"{query} ({index + 1})",
                url=f"https://{SIM_RESULTS_HOST}/{digest}/{index + 1}",
                summary=f"Simulated result {index + 1} for '{query}'.",
                text=f"Text of simulated result {index + 1}." if options.include_text else None,
            )
            for index in range(count)
        ]

"""The production web: real HTTP through httpx, a fetch policed by `_guard`, search by the
service the operator configured."""

from collections.abc import Sequence
from typing import Final

from kelpie.web._fetch import FetchPolicy, fetch_page
from kelpie.web._guard import parse_networks
from kelpie.web._search import exa_search, searxng_search
from kelpie.web._types import (
    EXA_SEARCH_URL,
    SEARCH_TIMEOUT_S,
    FetchedPage,
    SearchOptions,
    SearchResult,
    WebError,
)

SEARXNG: Final = "searxng"
EXA: Final = "exa"


class HttpWeb:
    """`allow_private` lets fetches reach loopback, private and link-local addresses (tests,
    or a server meant to read an intranet); `exempt_networks` (CIDR strings) are reachable
    even when it is off. A SearXNG URL wins over an Exa key when both are given: it is the
    self-hosted choice, set for this server on purpose."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        exempt_networks: Sequence[str] = (),
        searxng_url: str | None = None,
        exa_api_key: str | None = None,
        exa_url: str = EXA_SEARCH_URL,
        search_timeout_s: float = SEARCH_TIMEOUT_S,
    ) -> None:
        self._policy = FetchPolicy(
            allow_private=allow_private, exempt=parse_networks(exempt_networks)
        )
        self._searxng_url = searxng_url
        self._exa_api_key = exa_api_key
        self._exa_url = exa_url
        self._search_timeout_s = search_timeout_s

    @property
    def search_provider(self) -> str | None:
        if self._searxng_url:
            return SEARXNG
        if self._exa_api_key:
            return EXA
        return None

    async def fetch(self, url: str, *, max_bytes: int, timeout_s: float) -> FetchedPage:
        return await fetch_page(url, max_bytes=max_bytes, timeout_s=timeout_s, policy=self._policy)

    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        timeout_s = self._search_timeout_s
        if self._searxng_url:
            return await searxng_search(self._searxng_url, query, options, timeout_s=timeout_s)
        if self._exa_api_key:
            return await exa_search(
                self._exa_url, self._exa_api_key, query, options, timeout_s=timeout_s
            )
        raise WebError("No search service is configured")

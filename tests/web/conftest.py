"""The loopback sites of the web tests (`_support.Site`), one per module, their request logs
cleared for each test; and a safety net: no request of these tests leaves loopback, even if
the guard under test is broken (a refusal test names private and link-local addresses)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ._support import Site, serve


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request httpx sends must go to a loopback IP: a fetch sends to the address it
    checked, so a broken check fails the test here instead of reaching out."""
    send = httpx.AsyncClient.send

    async def loopback_send(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any
    ) -> httpx.Response:
        try:
            loopback = ipaddress.ip_address(request.url.host).is_loopback
        except ValueError:
            loopback = False
        assert loopback, f"a web test sent a request off loopback: {request.url}"
        return await send(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", loopback_send)


@pytest.fixture(scope="module")
def _site() -> Iterator[Site]:
    yield from serve("127.0.0.1")


@pytest.fixture
def site(_site: Site) -> Iterator[Site]:
    """The loopback site, its request log cleared for this test."""
    _site.clear()
    _site.release.clear()
    yield _site
    _site.release.set()


@pytest.fixture(scope="module")
def other_site() -> Iterator[Site]:
    """A second site on another loopback address (127.0.0.2), for redirects that leave."""
    yield from serve("127.0.0.2")

"""One page fetch over httpx, policed hop by hop.

Redirects are followed here rather than by httpx, so each hop's URL is checked as the first
was (a public page may redirect to http://127.0.0.1/). Each hop connects to an address the
guard checked: the request goes to that IP, with the host's name in the Host header and, for
https, as the TLS server name (so the certificate is still verified against the name). The
body is streamed and reading stops at the byte limit; the whole fetch, hops included, has one
time limit. No proxy from the environment is used: it would connect on the fetch's behalf to
addresses nobody checked."""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Final

import httpx

from kelpie.web._guard import IpAddress, IpNetwork, allowed_addresses, checked_url
from kelpie.web._readable import readable_text
from kelpie.web._types import FETCH_REDIRECTS_MAX, FetchedPage, WebError

REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
USER_AGENT: Final = "Mozilla/5.0 (compatible; Kelpie/1.0)"
ACCEPT: Final = (
    "text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.9,"
    "application/json;q=0.9,*/*;q=0.5"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    allow_private: bool = False
    exempt: Sequence[IpNetwork] = ()


async def fetch_page(
    url: str, *, max_bytes: int, timeout_s: float, policy: FetchPolicy
) -> FetchedPage:
    assert max_bytes > 0, max_bytes
    assert timeout_s > 0, timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await _follow(url, max_bytes=max_bytes, timeout_s=timeout_s, policy=policy)
    except (TimeoutError, httpx.TimeoutException):
        raise WebError(f"Timed out: '{url}' was not fetched within {timeout_s:g} s") from None


async def _follow(
    url: str, *, max_bytes: int, timeout_s: float, policy: FetchPolicy
) -> FetchedPage:
    current = checked_url(url)
    for _ in range(FETCH_REDIRECTS_MAX + 1):
        addresses = await allowed_addresses(
            current, allow_private=policy.allow_private, exempt=policy.exempt
        )
        async with _response(current, addresses, timeout_s) as response:
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                try:
                    current = checked_url(str(current.join(location)))
                except httpx.InvalidURL as error:
                    raise WebError(f"'{current}' redirected to a bad URL: {error}") from None
                continue
            if not response.is_success:
                raise WebError(
                    f"'{current}' answered HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip()
                )
            body, truncated = await _read_limited(response, current, max_bytes)
            content_type = response.headers.get("content-type", "")
            text, kind = readable_text(body, content_type, str(current))
            return FetchedPage(
                url=str(current),
                status=response.status_code,
                content_type=kind,
                text=text,
                truncated=truncated,
            )
    raise WebError(f"Gave up on '{url}' after {FETCH_REDIRECTS_MAX} redirects")


@contextlib.asynccontextmanager
async def _response(
    url: httpx.URL, addresses: Sequence[IpAddress], timeout_s: float
) -> AsyncIterator[httpx.Response]:
    """The response of a GET of `url` sent to the first of `addresses` that accepts a
    connection, its body not yet read. A client per hop: connections are pooled by address,
    and one made for another host's name (TLS included) must not be reused for this one."""
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    headers = {"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept": ACCEPT}
    last_error: httpx.ConnectError | None = None
    async with httpx.AsyncClient(
        follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s)
    ) as client:
        for address in addresses:
            request = client.build_request(
                "GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as error:
                last_error = error
                continue
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError as error:
                reason = str(error) or type(error).__name__
                raise WebError(f"Could not fetch '{url}': {reason}") from None
            try:
                yield response
            finally:
                await response.aclose()
            return
    assert last_error is not None, "no address to connect to"
    raise WebError(f"Could not connect to {url.host}: {str(last_error) or 'connection refused'}")


async def _read_limited(
    response: httpx.Response, url: httpx.URL, max_bytes: int
) -> tuple[bytes, bool]:
    """The body's first `max_bytes` bytes (after content decoding), and whether there was
    more. Reading stops there: a larger or endless body is never read in full."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            room = max_bytes - size
            if len(chunk) > room:
                chunks.append(chunk[:room])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as error:
        raise WebError(f"Reading '{url}' failed: {str(error) or type(error).__name__}") from None
    return b"".join(chunks), False

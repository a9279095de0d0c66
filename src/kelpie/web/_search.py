"""Search services: SearXNG's JSON API (self-hosted, no key: the default for a self-hosted
server) and Exa (what Letta's web_search used; needs EXA_API_KEY).

The service's URL is the operator's, not the model's, so it is not policed like a fetch (a
SearXNG on localhost is the usual set-up); its answer is limited in size and time. What a
service cannot do itself is done on its results: SearXNG has no domain or date filters, so
results outside them are dropped (a result without a date is kept)."""

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx
import orjson

from kelpie.web._types import (
    SEARCH_BYTES_MAX,
    SEARCH_TEXT_CHARS_MAX,
    SEARCH_TIMEOUT_S,
    SearchOptions,
    SearchResult,
    WebError,
)

# Letta's categories that SearXNG has a category for; the others search "general".
SEARXNG_CATEGORIES: Final[Mapping[str, str]] = {"news": "news", "research paper": "science"}
# Exa's highlights and summary, as Letta asked for them.
EXA_HIGHLIGHT_SENTENCES: Final = 2
EXA_HIGHLIGHTS_PER_URL: Final = 3
EXA_SUMMARY_PROMPT: Final = "Summarize the key information from this content related to: "
ERROR_BODY_CHARS_MAX: Final = 300
DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


async def searxng_search(
    base_url: str, query: str, options: SearchOptions, *, timeout_s: float = SEARCH_TIMEOUT_S
) -> list[SearchResult]:
    """`GET {base_url}/search?q=…&format=json` (the instance's settings.yml must list `json`
    in `search.formats`, or it answers 403)."""
    params = {"q": _searxng_query(query, options), "format": "json"}
    category = SEARXNG_CATEGORIES.get(options.category or "")
    if category is not None:
        params["categories"] = category
    url = base_url.rstrip("/") + "/search"
    data = await _json_request(
        "SearXNG", httpx.Request("GET", url, params=params), timeout_s=timeout_s
    )
    results = []
    for item in _list(data.get("results")):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        results.append(
            SearchResult(
                title=_text(item.get("title")) or item["url"],
                url=item["url"],
                published_date=_text(item.get("publishedDate")),
                author=_text(item.get("author")),
                summary=_text(item.get("content")),
            )
        )
    kept = [result for result in results if _passes(result, options)]
    return kept[: options.num_results]


def _searxng_query(query: str, options: SearchOptions) -> str:
    """The query, narrowed to one included domain by the engines' `site:` syntax (with more
    than one, the results are filtered instead: `OR` is not understood by every engine)."""
    if len(options.include_domains) == 1:
        return f"{query} site:{options.include_domains[0]}"
    return query


async def exa_search(
    api_url: str,
    api_key: str,
    query: str,
    options: SearchOptions,
    *,
    timeout_s: float = SEARCH_TIMEOUT_S,
) -> list[SearchResult]:
    """`POST https://api.exa.ai/search` with the request Letta's exa-py call made."""
    contents: dict[str, Any] = {
        "highlights": {
            "numSentences": EXA_HIGHLIGHT_SENTENCES,
            "highlightsPerUrl": EXA_HIGHLIGHTS_PER_URL,
            "query": query,
        },
        "summary": {"query": f"{EXA_SUMMARY_PROMPT}{query}"},
    }
    if options.include_text:
        contents["text"] = {"maxCharacters": SEARCH_TEXT_CHARS_MAX}
    body: dict[str, Any] = {
        "query": query,
        "type": "auto",
        "numResults": options.num_results,
        "contents": contents,
    }
    optional = {
        "category": options.category,
        "includeDomains": list(options.include_domains) or None,
        "excludeDomains": list(options.exclude_domains) or None,
        "startPublishedDate": options.start_published_date,
        "endPublishedDate": options.end_published_date,
        "userLocation": options.user_location,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    request = httpx.Request(
        "POST", api_url, content=orjson.dumps(body), headers={"x-api-key": api_key}
    )
    request.headers["Content-Type"] = "application/json"
    data = await _json_request("Exa", request, timeout_s=timeout_s)
    results = []
    for item in _list(data.get("results")):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        highlights = tuple(h for h in _list(item.get("highlights")) if isinstance(h, str))
        text = _text(item.get("text")) if options.include_text else None
        results.append(
            SearchResult(
                title=_text(item.get("title")) or item["url"],
                url=item["url"],
                published_date=_text(item.get("publishedDate")),
                author=_text(item.get("author")),
                summary=_text(item.get("summary")),
                highlights=highlights,
                text=None if text is None else text[:SEARCH_TEXT_CHARS_MAX],
            )
        )
    return results[: options.num_results]


async def _json_request(
    service: str, request: httpx.Request, *, timeout_s: float
) -> dict[str, Any]:
    """The JSON object a service answered, read up to SEARCH_BYTES_MAX. Raises WebError."""
    where = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s)) as client:
        try:
            response = await client.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > SEARCH_BYTES_MAX:
                        raise WebError(
                            f"{service} at {where} answered more than {SEARCH_BYTES_MAX} bytes"
                        )
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            raise WebError(f"{service} at {where} did not answer within {timeout_s:g} s") from None
        except httpx.HTTPError as error:
            raise WebError(
                f"{service} at {where} could not be reached: {str(error) or type(error).__name__}"
            ) from None
    if not response.is_success:
        excerpt = bytes(body[:ERROR_BODY_CHARS_MAX]).decode(errors="replace").strip()
        hint = ""
        if service == "SearXNG" and response.status_code == 403:
            hint = " (is `json` listed in search.formats of its settings.yml?)"
        raise WebError(
            f"{service} at {where} answered HTTP {response.status_code}{hint}: {excerpt}"
        )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebError(f"{service} at {where} answered something that is not JSON") from None
    if not isinstance(data, dict):
        raise WebError(f"{service} at {where} answered JSON that is not an object")
    return data


def _passes(result: SearchResult, options: SearchOptions) -> bool:
    host = (urllib.parse.urlsplit(result.url).hostname or "").lower()
    if options.include_domains and not any(_on(host, d) for d in options.include_domains):
        return False
    if any(_on(host, d) for d in options.exclude_domains):
        return False
    published = _date(result.published_date)
    if published is None:
        return True
    start, end = _date(options.start_published_date), _date(options.end_published_date)
    return (start is None or published >= start) and (end is None or published <= end)


def _on(host: str, domain: str) -> bool:
    domain = domain.strip().lower().removeprefix("www.")
    return bool(domain) and (host == domain or host.endswith("." + domain))


def _date(value: str | None) -> str | None:
    """The YYYY-MM-DD an ISO 8601 date or time starts with (comparable as a string)."""
    match = DATE_RE.match(value.strip()) if value else None
    return match.group(0) if match else None


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _list(value: object) -> Sequence[object]:
    return value if isinstance(value, list) else ()

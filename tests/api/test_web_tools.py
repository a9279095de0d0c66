"""fetch_webpage and web_search through the real API: an agent with the tools attached by
name, a scripted model calling them, a `kelpie serve` process doing the fetching and
searching against a site on loopback. Loopback is reachable only where the server was
started with KELPIE_WEB_ALLOW_PRIVATE=1; the default server refuses it."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import pytest
from letta_client import Letta

from ._support import (
    KelpieStarter,
    ScriptedLlm,
    calling,
    model_messages,
    new_agent,
    reply,
    tool_call,
)

PAGE_SENTENCE: Final = "Giant kelp grows up to half a metre a day in cold, nutrient-rich water"
SCRIPT_MARK: Final = "SCRIPT_SECRET_91b2"
PAGE_HTML: Final = f"""<!doctype html><html><head><title>Kelp</title>
<script>var secret = "{SCRIPT_MARK}";</script></head><body><article>
<h1>Kelp forests</h1><p>{PAGE_SENTENCE}, forming dense forests that shelter hundreds of
species of fish, invertebrates and marine mammals along the coast of the north Pacific.</p>
<p>Urchins graze on kelp holdfasts; where sea otters disappear, urchin barrens replace the
forest within a few seasons, and it takes decades to return.</p></article></body></html>"""
SEARCH_RESULT: Final = {
    "url": "https://kelp.example.org/forests",
    "title": "Kelp forests",
    "content": "Kelp forests are underwater ecosystems.",
    "publishedDate": "2024-05-01T00:00:00",
}
JOIN_TIMEOUT_S: Final = 5.0


class _Site:
    def __init__(self) -> None:
        self.base_url = ""
        self.paths: list[str] = []
        self.queries: list[str] = []


def _handler(site: _Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            site.paths.append(parts.path)
            if parts.path == "/article":
                self._send("text/html; charset=utf-8", PAGE_HTML.encode())
            elif parts.path == "/search":
                query = urllib.parse.parse_qs(parts.query)["q"][0]
                site.queries.append(query)
                answer = {"query": query, "results": [SEARCH_RESULT]}
                self._send("application/json", json.dumps(answer).encode())
            else:
                self.send_error(404)

        def _send(self, content_type: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    """A page and a fake SearXNG on loopback, served from this test process."""
    site = _Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(JOIN_TIMEOUT_S)


@pytest.fixture(scope="module")
def web_client(kelpie_launcher: KelpieStarter, site: _Site) -> Iterator[Letta]:
    """A server that may fetch loopback, searching the site's fake SearXNG."""
    base_url = kelpie_launcher.start(
        {"KELPIE_WEB_ALLOW_PRIVATE": "1", "KELPIE_WEB_SEARCH_URL": site.base_url}
    )
    letta = Letta(base_url=base_url, api_key="sk-kelpie-test", max_retries=0, timeout=60)
    try:
        yield letta
    finally:
        letta.close()


def _tool_returns(client: Letta, script: ScriptedLlm, name: str, arguments: dict[str, Any]) -> Any:
    """Runs one turn in which the model calls `name` once; returns the tool return message."""
    agent = new_agent(client, include_base_tools=False, tools=["fetch_webpage", "web_search"])
    script.enqueue(calling(tool_call(name, arguments, call_id="call_web")), reply("Read it."))
    response: Any = client.agents.messages.create(
        agent.id, messages=[{"role": "user", "content": "Look it up."}]
    )
    [returned] = [m for m in response.messages if m.message_type == "tool_return_message"]
    assert returned.tool_call_id == "call_web"
    assert response.messages[-1].content == "Read it."
    return returned


def test_fetch_webpage_returns_the_pages_text(
    web_client: Letta, script: ScriptedLlm, site: _Site
) -> None:
    returned = _tool_returns(
        web_client, script, "fetch_webpage", {"url": f"{site.base_url}/article"}
    )
    assert returned.status == "success"
    assert PAGE_SENTENCE in returned.tool_return
    assert "# Kelp forests" in returned.tool_return
    assert SCRIPT_MARK not in returned.tool_return
    assert "/article" in site.paths
    # The model was given the page.
    tool_message = model_messages(script.requests()[1])[-1]
    assert PAGE_SENTENCE in str(tool_message["content"])


def test_web_search_asks_the_configured_searxng(
    web_client: Letta, script: ScriptedLlm, site: _Site
) -> None:
    returned = _tool_returns(web_client, script, "web_search", {"query": "kelp forests"})
    assert returned.status == "success"
    assert json.loads(returned.tool_return) == {
        "query": "kelp forests",
        "results": [
            {
                "title": "Kelp forests",
                "url": "https://kelp.example.org/forests",
                "published_date": "2024-05-01T00:00:00",
                "author": None,
                "summary": "Kelp forests are underwater ecosystems.",
            }
        ],
    }
    assert "kelp forests" in site.queries


def test_the_default_server_refuses_loopback_and_has_no_search_service(
    client: Letta, script: ScriptedLlm, site: _Site
) -> None:
    site.paths.clear()
    fetched = _tool_returns(client, script, "fetch_webpage", {"url": f"{site.base_url}/article"})
    assert fetched.status == "error"
    assert "127.0.0.1 is a loopback address" in fetched.tool_return
    assert site.paths == []
    searched = _tool_returns(client, script, "web_search", {"query": "kelp"})
    assert searched.status == "error"
    assert "KELPIE_WEB_SEARCH_URL" in searched.tool_return
    assert site.queries.count("kelp") == 0

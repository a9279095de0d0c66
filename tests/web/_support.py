"""A real HTTP site on loopback for the web tests: pages of each kind, redirects, a body that
never ends, responses that stall or trickle, and fake SearXNG and Exa endpoints. It records
every request it gets, so a test can tell a refused fetch (nothing arrived) from a failed one.

The server runs in threads of the test process (http.server), so the tests' own event loop
talks to it over real sockets."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

# Served at /article: what must survive the conversion, and what must not.
ARTICLE_HEADING: Final = "Kelp forests of the north Pacific"
ARTICLE_SENTENCE: Final = "Giant kelp grows up to half a metre a day in cold, nutrient-rich water"
ARTICLE_LIST_ITEM: Final = "Sea otters keep urchins in check"
SCRIPT_MARK: Final = "SCRIPT_SECRET_7f3a"
STYLE_MARK: Final = "STYLE_MARK_c0ffee"
ARTICLE_HTML: Final = f"""<!doctype html>
<html><head><title>Kelp</title>
<style>.kelp {{ color: green; }} /* {STYLE_MARK} */</style>
<script>window.secret = "{SCRIPT_MARK}";</script></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article><h1>{ARTICLE_HEADING}</h1>
<p>{ARTICLE_SENTENCE}, forming dense underwater forests that shelter hundreds of species of
fish, invertebrates and marine mammals along the coast.</p>
<h2>Food web</h2>
<p>Urchins graze on kelp holdfasts; where their predators disappear, urchin barrens replace
the forest within a few seasons, and the forest takes decades to return.</p>
<ul><li>{ARTICLE_LIST_ITEM}</li><li>Urchins eat kelp</li></ul>
<script>document.write("{SCRIPT_MARK}")</script>
</article><footer>Footer</footer></body></html>"""
PLAIN_TEXT: Final = "Plain text, kept as it is: <not html> & ünïcode ✓\n"
JSON_BODY: Final = '{"kelp": ["giant", "bull"], "depth_m": 30}'
PNG_BYTES: Final = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
CHUNK_BYTES: Final = 16 * 1024
# The endless body stops by itself after this much, if the client never hangs up.
ENDLESS_BYTES_MAX: Final = 256 * 1024 * 1024
# A stalled or trickling response gives up after this long, if the test never releases it.
STALL_S_MAX: Final = 10.0
TRICKLE_INTERVAL_S: Final = 0.05
HANDLER_DONE_TIMEOUT_S: Final = 10.0

SEARXNG_RESULTS: Final[list[dict[str, str | None]]] = [
    {
        "url": "https://kelp.example.org/forests",
        "title": "Kelp forests",
        "content": "Kelp forests are underwater ecosystems.",
        "publishedDate": "2024-05-01T00:00:00",
        "engine": "duckduckgo",
    },
    {
        "url": "https://news.example.com/kelp-decline",
        "title": "Kelp decline",
        "content": "Warming seas thin the forests.",
        "publishedDate": None,
        "engine": "bing",
    },
    {
        "url": "https://www.otters.example.net/otters",
        "title": "Sea otters",
        "content": "Otters eat urchins.",
        "publishedDate": "2019-02-03",
        "engine": "brave",
    },
]
EXA_RESULTS: Final[list[dict[str, Any]]] = [
    {
        "id": "https://kelp.example.org/forests",
        "url": "https://kelp.example.org/forests",
        "title": "Kelp forests",
        "publishedDate": "2024-05-01T00:00:00.000Z",
        "author": "A. Diver",
        "text": "Full text about kelp.",
        "highlights": ["Kelp grows fast.", "Otters help."],
        "summary": "An overview of kelp forests.",
    }
]


@dataclasses.dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class Site:
    """The running site: its base URL, what it was asked, and the endless body's count."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.endless_sent = 0
        self.endless_done = threading.Event()

    def url(self, path: str) -> str:
        return self.base_url + path

    def seen(self, path_prefix: str = "") -> list[Seen]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
        self.endless_done.clear()
        self.endless_sent = 0


class Handler(BaseHTTPRequestHandler):
    site: Site  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self._record(b"")
        parts = urllib.parse.urlsplit(self.path)
        name = parts.path.strip("/").split("/")[-1].replace("-", "_")
        route = getattr(self, f"_get_{name}", None)
        if parts.path.endswith("/search"):
            route = self._searxng
        if route is None:
            self._send(404, "text/plain", b"no such page")
            return
        route(urllib.parse.parse_qs(parts.query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._record(body)
        if self.path.endswith("/exa/search"):
            self._send(200, "application/json", json.dumps({"results": EXA_RESULTS}).encode())
        else:
            self._send(404, "text/plain", b"no such endpoint")

    def _record(self, body: bytes) -> None:
        parts = urllib.parse.urlsplit(self.path)
        seen = Seen(
            self.command,
            parts.path,
            urllib.parse.parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        with self.site.lock:
            self.site.requests.append(seen)

    def _send(self, status: int, content_type: str | None, body: bytes, **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _get_article(self, query: dict[str, list[str]]) -> None:
        self._send(200, "text/html; charset=utf-8", ARTICLE_HTML.encode())

    def _get_plain(self, query: dict[str, list[str]]) -> None:
        self._send(200, "text/plain; charset=utf-8", PLAIN_TEXT.encode())

    def _get_json(self, query: dict[str, list[str]]) -> None:
        self._send(200, "application/json", JSON_BODY.encode())

    def _get_png(self, query: dict[str, list[str]]) -> None:
        self._send(200, "image/png", PNG_BYTES)

    def _get_undeclared_binary(self, query: dict[str, list[str]]) -> None:
        self._send(200, None, PNG_BYTES)

    def _get_undeclared_html(self, query: dict[str, list[str]]) -> None:
        self._send(200, None, ARTICLE_HTML.encode())

    def _get_missing(self, query: dict[str, list[str]]) -> None:
        self._send(404, "text/html", b"<p>Not here</p>")

    def _get_redirect(self, query: dict[str, list[str]]) -> None:
        self._send(302, "text/plain", b"moved", Location=query["to"][0])

    def _get_loop(self, query: dict[str, list[str]]) -> None:
        self._send(302, "text/plain", b"again", Location="/loop")

    def _get_endless(self, query: dict[str, list[str]]) -> None:
        """A text body with no end (HTTP/1.0, no length): only the client hanging up, or
        ENDLESS_BYTES_MAX, stops it."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        chunk = b"x" * CHUNK_BYTES
        try:
            while self.site.endless_sent < ENDLESS_BYTES_MAX:
                self.wfile.write(chunk)
                self.site.endless_sent += len(chunk)
        except OSError:
            pass
        finally:
            self.site.endless_done.set()

    def _get_stall(self, query: dict[str, list[str]]) -> None:
        """Accepts the request and answers nothing until released."""
        self.site.release.wait(STALL_S_MAX)

    def _get_trickle(self, query: dict[str, list[str]]) -> None:
        """Headers at once, then one byte every TRICKLE_INTERVAL_S: no read ever waits long,
        but the body takes far longer than any fetch may."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        deadline = time.monotonic() + STALL_S_MAX
        try:
            while time.monotonic() < deadline and not self.site.release.is_set():
                self.wfile.write(b"y")
                self.wfile.flush()
                time.sleep(TRICKLE_INTERVAL_S)
        except OSError:
            pass

    def _searxng(self, query: dict[str, list[str]]) -> None:
        if self.path.startswith("/forbidden/"):
            self._send(403, "text/html", b"<h1>403 Forbidden</h1>")
            return
        if self.path.startswith("/stalled/"):
            self.site.release.wait(STALL_S_MAX)
            return
        answer = {"query": query["q"][0], "number_of_results": 0, "results": SEARXNG_RESULTS}
        self._send(200, "application/json", json.dumps(answer).encode())


def serve(host: str) -> Iterator[Site]:
    class SiteHandler(Handler):
        pass

    server = ThreadingHTTPServer((host, 0), SiteHandler)
    server.daemon_threads = True
    site = Site(f"http://{host}:{server.server_address[1]}")
    SiteHandler.site = site
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.release.set()
        server.shutdown()
        server.server_close()
        thread.join(HANDLER_DONE_TIMEOUT_S)

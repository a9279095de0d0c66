"""HttpWeb.fetch against a real site on loopback: pages become readable text, limits of size
and time hold, redirects are checked hop by hop, and addresses that are not public (and
schemes other than http/https) are refused before anything is sent."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

import pytest

from kelpie.web import FETCH_REDIRECTS_MAX, FetchedPage, HttpWeb, WebError, WebRefused
from kelpie.web._guard import refusal

from ._support import (
    ARTICLE_HEADING,
    ARTICLE_LIST_ITEM,
    ARTICLE_SENTENCE,
    ENDLESS_BYTES_MAX,
    HANDLER_DONE_TIMEOUT_S,
    JSON_BODY,
    PLAIN_TEXT,
    SCRIPT_MARK,
    STYLE_MARK,
    Site,
)

MAX_BYTES: Final = 1024 * 1024
TIMEOUT_S: Final = 10.0
SHORT_TIMEOUT_S: Final = 0.5
# A timed-out fetch must be over well before the stalled server would have answered.
TIMED_OUT_WITHIN_S: Final = 3.0
OPEN_WEB: Final = HttpWeb(allow_private=True)


def fetch(
    web: HttpWeb, url: str, *, max_bytes: int = MAX_BYTES, timeout_s: float = TIMEOUT_S
) -> FetchedPage:
    return asyncio.run(web.fetch(url, max_bytes=max_bytes, timeout_s=timeout_s))


def refused(web: HttpWeb, url: str) -> str:
    with pytest.raises(WebRefused) as caught:
        fetch(web, url)
    return str(caught.value)


class TestReadableText:
    def test_an_html_page_becomes_markdown_of_its_content_without_scripts_or_styles(
        self, site: Site
    ) -> None:
        page = fetch(OPEN_WEB, site.url("/article"))
        assert page.status == 200
        assert page.content_type == "text/html"
        assert page.url == site.url("/article")
        assert not page.truncated
        assert f"# {ARTICLE_HEADING}" in page.text
        assert ARTICLE_SENTENCE in page.text
        assert f"- {ARTICLE_LIST_ITEM}" in page.text
        assert SCRIPT_MARK not in page.text
        assert STYLE_MARK not in page.text
        assert "<p>" not in page.text

    def test_an_html_page_without_a_content_type_is_recognised(self, site: Site) -> None:
        page = fetch(OPEN_WEB, site.url("/undeclared-html"))
        assert page.content_type == "text/html"
        assert ARTICLE_SENTENCE in page.text
        assert SCRIPT_MARK not in page.text

    def test_plain_text_and_json_are_returned_as_they_are(self, site: Site) -> None:
        plain = fetch(OPEN_WEB, site.url("/plain"))
        assert (plain.text, plain.content_type) == (PLAIN_TEXT, "text/plain")
        data = fetch(OPEN_WEB, site.url("/json"))
        assert (data.text, data.content_type) == (JSON_BODY, "application/json")

    @pytest.mark.parametrize(("path", "kind"), [("/png", "image/png"), ("/undeclared-binary", "")])
    def test_binary_content_is_refused_with_its_type(
        self, site: Site, path: str, kind: str
    ) -> None:
        message = refused(OPEN_WEB, site.url(path))
        assert "not a web page" in message
        assert "HTML and text" in message
        assert (kind or "application/octet-stream") in message

    def test_an_error_status_is_an_error_naming_it(self, site: Site) -> None:
        with pytest.raises(WebError, match="HTTP 404"):
            fetch(OPEN_WEB, site.url("/missing"))


class TestLimits:
    def test_reading_stops_at_the_byte_limit_of_an_endless_body(self, site: Site) -> None:
        limit = 64 * 1024
        page = fetch(OPEN_WEB, site.url("/endless"), max_bytes=limit)
        assert page.truncated
        assert page.text == "x" * limit
        # The client hung up: the server's writes failed long before its own stop.
        assert site.endless_done.wait(HANDLER_DONE_TIMEOUT_S)
        assert site.endless_sent < ENDLESS_BYTES_MAX

    def test_a_body_within_the_limit_is_not_marked_truncated(self, site: Site) -> None:
        page = fetch(OPEN_WEB, site.url("/plain"), max_bytes=len(PLAIN_TEXT.encode()))
        assert not page.truncated
        assert page.text == PLAIN_TEXT

    @pytest.mark.parametrize("path", ["/stall", "/trickle"])
    def test_a_server_that_stalls_or_trickles_is_given_up_on_in_time(
        self, site: Site, path: str
    ) -> None:
        started = time.monotonic()
        with pytest.raises(WebError, match="Timed out") as caught:
            fetch(OPEN_WEB, site.url(path), timeout_s=SHORT_TIMEOUT_S)
        assert time.monotonic() - started < TIMED_OUT_WITHIN_S
        assert f"{SHORT_TIMEOUT_S:g} s" in str(caught.value)
        assert [r.path for r in site.seen()] == [path]


class TestRedirects:
    def test_a_redirect_is_followed_and_the_page_says_where_it_was_found(self, site: Site) -> None:
        page = fetch(OPEN_WEB, site.url("/redirect?to=/article"))
        assert page.url == site.url("/article")
        assert ARTICLE_SENTENCE in page.text
        assert [r.path for r in site.seen()] == ["/redirect", "/article"]

    def test_redirects_without_end_are_given_up_on(self, site: Site) -> None:
        with pytest.raises(WebError, match=f"after {FETCH_REDIRECTS_MAX} redirects"):
            fetch(OPEN_WEB, site.url("/loop"))
        assert len(site.seen("/loop")) == FETCH_REDIRECTS_MAX + 1

    def test_a_redirect_to_a_loopback_address_is_refused_before_it_is_followed(
        self, site: Site, other_site: Site
    ) -> None:
        # Only the first site's address is reachable: the redirect's target is not.
        web = HttpWeb(exempt_networks=["127.0.0.1/32"])
        assert fetch(web, site.url("/plain")).text == PLAIN_TEXT
        other_site.clear()
        message = refused(web, site.url(f"/redirect?to={other_site.url('/article')}"))
        assert "127.0.0.2 is a loopback address" in message
        assert "KELPIE_WEB_ALLOW_PRIVATE" in message
        assert site.seen("/redirect") != []
        assert other_site.seen() == []

    @pytest.mark.parametrize(
        "target",
        ["http://169.254.169.254/latest/meta-data/", "http://[::1]/", "file:///etc/passwd"],
    )
    def test_a_redirect_to_a_refused_url_is_refused(self, site: Site, target: str) -> None:
        web = HttpWeb(exempt_networks=["127.0.0.1/32"])
        with pytest.raises(WebRefused):
            fetch(web, site.url(f"/redirect?to={target}"))
        assert [r.path for r in site.seen()] == ["/redirect"]


class TestRefusedByDefault:
    @pytest.mark.parametrize(
        ("url", "kind"),
        [
            ("http://127.0.0.1:{port}/article", "127.0.0.1 is a loopback address"),
            ("http://localhost:{port}/article", "a loopback address"),
            ("http://[::1]:{port}/article", "::1 is a loopback address"),
            ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
            ("http://2130706433:{port}/article", "(127.0.0.1) is a loopback address"),
            ("http://[::ffff:127.0.0.1]:{port}/article", "a loopback address"),
            ("http://0.0.0.0:{port}/article", "the unspecified address"),
            ("http://10.1.2.3/", "a private address"),
        ],
    )
    def test_addresses_that_are_not_public_are_refused_and_never_contacted(
        self, site: Site, url: str, kind: str
    ) -> None:
        port = site.base_url.rsplit(":", 1)[1]
        message = refused(HttpWeb(), url.format(port=port))
        assert kind in message
        assert "KELPIE_WEB_ALLOW_PRIVATE" in message
        assert site.seen() == []

    @pytest.mark.parametrize(
        "url", ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://example.com/", "example.com"]
    )
    def test_schemes_other_than_http_and_https_are_refused(self, url: str) -> None:
        message = refused(HttpWeb(allow_private=True), url)
        assert "only http and https URLs are fetched" in message

    @pytest.mark.parametrize(
        "address",
        ["127.0.0.1", "::1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
         "fe80::1", "fc00::1", "224.0.0.1", "ff02::1", "0.0.0.0", "240.0.0.1",
         "100.64.0.1", "::ffff:10.0.0.1"],
    )  # fmt: skip
    def test_every_non_public_range_has_a_refusal(self, address: str) -> None:
        assert refusal(ipaddress.ip_address(address)) is not None

    @pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
    def test_public_addresses_pass(self, address: str) -> None:
        assert refusal(ipaddress.ip_address(address)) is None


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """An https server on 127.0.0.1 with a self-signed certificate for `localhost`; yields its
    port and the TLS server names clients sent."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make the test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def record_name(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name or "")

    context.sni_callback = record_name
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(server.server_address[1]), names
    finally:
        server.shutdown()
        server.server_close()
        thread.join(HANDLER_DONE_TIMEOUT_S)


class TestTls:
    def test_https_to_a_checked_address_still_sends_and_verifies_the_hosts_name(
        self, tls_site: tuple[str, list[str]]
    ) -> None:
        port, names = tls_site
        # The connection goes to the address checked for `localhost`, and TLS still names
        # `localhost`; the self-signed certificate is then refused: verification is on.
        with pytest.raises(WebError, match="CERTIFICATE_VERIFY_FAILED"):
            fetch(OPEN_WEB, f"https://localhost:{port}/")
        assert "localhost" in names

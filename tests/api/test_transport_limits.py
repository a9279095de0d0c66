"""Abuse limits at the transport (issues 14 and 15): a request body counted as it streams,
request heads and bodies that arrive too slowly cut off, a connection cap, and throttled
failed authentication. Raw sockets, since HTTP clients will not misbehave on purpose."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Final

import httpx
import pytest

from ._support import KelpieStarter, unique

HEADER_TIMEOUT_S: Final = 1.0
BODY_TIMEOUT_S: Final = 1.0
# Generous: the server is busy with other tests' servers under xdist.
CUT_OFF_SLACK_S: Final = 3.0
REQUEST_BODY_BYTES_MAX: Final = 32 * 1024 * 1024
HEADER_BYTES_MAX: Final = 64 * 1024
SOCKET_TIMEOUT_S: Final = 30.0
PASSWORD: Final = "kelpie-limits-password"
AUTH_FAILURES_MAX: Final = 3
OTHER_ADDRESS: Final = "127.0.0.2"


@pytest.fixture(scope="module")
def limits_server(kelpie_launcher: KelpieStarter) -> str:
    return kelpie_launcher.start(
        {
            "KELPIE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "KELPIE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        }
    )


@pytest.fixture
def limits_http(limits_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limits_server, timeout=SOCKET_TIMEOUT_S) as raw:
        yield raw


@contextlib.contextmanager
def connection(base_url: str) -> Iterator[socket.socket]:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S)
    try:
        yield sock
    finally:
        sock.close()


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def block_count(http: httpx.Client) -> int:
    response = http.get("/v1/blocks/", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return len(response.json())


class TestSlowClients:
    def test_a_connection_that_sends_nothing_is_closed(self, limits_server: str) -> None:
        with connection(limits_server) as sock:
            received, took = read_until_closed(sock)

        assert received == b""
        assert HEADER_TIMEOUT_S * 0.9 <= took < HEADER_TIMEOUT_S + CUT_OFF_SLACK_S

    def test_slow_headers_are_cut_off_with_408(self, limits_server: str) -> None:
        with connection(limits_server) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: kelpie\r\n")
            started = time.monotonic()
            # A header line every so often would hold the connection for ever without a
            # deadline that later bytes do not push back.
            with contextlib.suppress(OSError):
                for _ in range(10):
                    time.sleep(HEADER_TIMEOUT_S / 4)
                    sock.sendall(b"X-Slow: 1\r\n")
            received, _ = read_until_closed(sock)
            took = time.monotonic() - started

        assert received.startswith(b"HTTP/1.1 408 "), received
        assert b"Request headers not received within 1 s" in received
        assert took < HEADER_TIMEOUT_S + CUT_OFF_SLACK_S

    def test_oversized_headers_are_431(self, limits_server: str) -> None:
        with connection(limits_server) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: kelpie\r\n")
            with contextlib.suppress(OSError):
                for _ in range(HEADER_BYTES_MAX // 1000 + 2):
                    sock.sendall(b"X-Big: " + b"a" * 1000 + b"\r\n")
            received, _ = read_until_closed(sock)

        assert received.startswith(b"HTTP/1.1 431 "), received
        assert b"Request headers over 65536 bytes" in received

    def test_a_body_that_stops_arriving_is_cut_off_with_408(
        self, limits_server: str, limits_http: httpx.Client
    ) -> None:
        blocks = block_count(limits_http)
        with connection(limits_server) as sock:
            sock.sendall(
                b"POST /v1/blocks HTTP/1.1\r\nHost: kelpie\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"label": "slow", "value": "'
            )
            received, took = read_until_closed(sock)

        assert received.startswith(b"HTTP/1.1 408 "), received
        assert b"Request body not received: nothing arrived for 1 s" in received
        assert b"connection: close" in received.lower()
        assert BODY_TIMEOUT_S * 0.9 <= took < BODY_TIMEOUT_S + CUT_OFF_SLACK_S
        assert block_count(limits_http) == blocks

    def test_a_trickled_body_is_fine_while_it_keeps_coming(
        self, limits_server: str, limits_http: httpx.Client
    ) -> None:
        label = unique("trickled")
        body = f'{{"label": "{label}", "value": "v"}}'.encode()
        with connection(limits_server) as sock:
            sock.sendall(
                b"POST /v1/blocks HTTP/1.1\r\nHost: kelpie\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            )
            for index in range(0, len(body), 10):
                time.sleep(BODY_TIMEOUT_S / 4)
                sock.sendall(body[index : index + 10])
            received, _ = read_until_closed(sock)

        assert received.startswith(b"HTTP/1.1 200 "), received
        assert label.encode() in received


class TestBodyLimit:
    def test_a_chunked_body_over_the_limit_is_413_and_not_stored(
        self, limits_server: str, limits_http: httpx.Client
    ) -> None:
        blocks = block_count(limits_http)
        chunk = b"a" * (1024 * 1024)
        with connection(limits_server) as sock:
            sock.sendall(
                b"POST /v1/blocks HTTP/1.1\r\nHost: kelpie\r\nContent-Type: application/json\r\n"
                b'Transfer-Encoding: chunked\r\n\r\n19\r\n{"label": "x", "value": "\r\n'
            )
            sent = 0
            with contextlib.suppress(OSError):  # the server closes once it has said 413
                while sent < 3 * REQUEST_BODY_BYTES_MAX:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
            received, _ = read_until_closed(sock)

        assert received.startswith(b"HTTP/1.1 413 "), received[:200]
        assert b'{"detail": "Request body over 33554432 bytes"}' in received
        assert sent < 2 * REQUEST_BODY_BYTES_MAX  # cut off, not read whole
        assert block_count(limits_http) == blocks

    def test_a_content_length_over_the_limit_is_413_up_front(self, limits_server: str) -> None:
        with connection(limits_server) as sock:
            sock.sendall(
                b"POST /v1/blocks HTTP/1.1\r\nHost: kelpie\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n{" % (REQUEST_BODY_BYTES_MAX + 1)
            )
            received, took = read_until_closed(sock)

        assert received.startswith(b"HTTP/1.1 413 "), received
        assert received.endswith(b'{"detail": "Request body over 33554432 bytes"}')
        assert took < CUT_OFF_SLACK_S  # closed at once, not after the rest of the body

    def test_a_chunked_body_under_the_limit_is_served(self, limits_http: httpx.Client) -> None:
        label = unique("chunked")

        def chunks() -> Iterator[bytes]:
            yield f'{{"label": "{label}", '.encode()
            yield b'"value": "v"}'

        response = limits_http.post(
            "/v1/blocks/", content=chunks(), headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 200, response.text
        assert response.json()["label"] == label


class TestConnectionCap:
    def test_requests_past_the_cap_are_503_until_connections_close(
        self, kelpie_launcher: KelpieStarter
    ) -> None:
        base_url = kelpie_launcher.start(
            {"KELPIE_CONNECTIONS_MAX": "4", "KELPIE_HEADER_TIMEOUT_S": "30"}
        )
        with contextlib.ExitStack() as idle:
            for _ in range(4):
                idle.enter_context(connection(base_url))
            time.sleep(0.2)  # accepted by the server
            with httpx.Client(base_url=base_url, timeout=SOCKET_TIMEOUT_S) as raw:
                refused = raw.get("/v1/health")
        time.sleep(0.2)  # the closes reach the server
        with httpx.Client(base_url=base_url, timeout=SOCKET_TIMEOUT_S) as raw:
            served = raw.get("/v1/health")

        assert refused.status_code == 503
        assert served.status_code == 200


@pytest.fixture(scope="module")
def throttled_server(kelpie_launcher: KelpieStarter) -> str:
    return kelpie_launcher.start(
        {
            "LETTA_SERVER_PASSWORD": PASSWORD,
            "KELPIE_AUTH_FAILURES_MAX": str(AUTH_FAILURES_MAX),
            "KELPIE_AUTH_FAILURE_WINDOW_S": "600",
        }
    )


def client_from(base_url: str, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=SOCKET_TIMEOUT_S)


@pytest.fixture(scope="module")
def password_server(kelpie_launcher: KelpieStarter) -> str:
    return kelpie_launcher.start({"LETTA_SERVER_PASSWORD": PASSWORD})


class TestPasswordSchemes:
    @pytest.mark.parametrize(
        "headers",
        [
            {"Authorization": PASSWORD},
            {"Authorization": f"Basic {PASSWORD}"},
            {"Authorization": f"Bearer{PASSWORD}"},
            {"X-BARE-PASSWORD": PASSWORD},
        ],
        ids=["bare-authorization", "basic", "no-space", "bare-password-without-prefix"],
    )
    def test_the_password_without_its_scheme_is_401(
        self, password_server: str, headers: dict[str, str]
    ) -> None:
        with httpx.Client(base_url=password_server, timeout=SOCKET_TIMEOUT_S) as raw:
            response = raw.get("/v1/agents/", headers=headers)
            admitted = raw.get("/v1/agents/", headers={"Authorization": f"bearer {PASSWORD}"})

        assert response.status_code == 401
        assert response.json() == {"detail": "Unauthorized"}
        assert admitted.status_code == 200, admitted.text


class TestAuthThrottling:
    def test_repeated_failures_are_429_for_that_address_only(self, throttled_server: str) -> None:
        wrong = {"Authorization": "Bearer wrong"}
        right = {"Authorization": f"Bearer {PASSWORD}"}
        with client_from(throttled_server, "127.0.0.1") as attacker:
            statuses = [attacker.get("/v1/agents/", headers=wrong).status_code for _ in range(50)]
            throttled = attacker.get("/v1/agents/", headers=wrong)
            right_from_attacker = attacker.get("/v1/agents/", headers=right)
            health = attacker.get("/v1/health")
        with client_from(throttled_server, OTHER_ADDRESS) as other:
            right_from_other = other.get("/v1/agents/", headers=right)

        assert statuses == [401] * AUTH_FAILURES_MAX + [429] * (50 - AUTH_FAILURES_MAX)
        assert throttled.status_code == 429
        assert throttled.json()["detail"].startswith(
            "Too many failed authentication attempts; retry in"
        )
        assert 1 <= int(throttled.headers["retry-after"]) <= 600
        assert right_from_attacker.status_code == 429  # guessing right is no escape
        assert health.status_code == 200  # health stays open
        assert right_from_other.status_code == 200, right_from_other.text

    def test_requests_without_credentials_do_not_count(self, throttled_server: str) -> None:
        with client_from(throttled_server, "127.0.0.3") as anonymous:
            statuses = {anonymous.get("/v1/agents/").status_code for _ in range(10)}
            right = anonymous.get("/v1/agents/", headers={"Authorization": f"Bearer {PASSWORD}"})

        assert statuses == {401}
        assert right.status_code == 200, right.text

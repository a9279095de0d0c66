"""Transport conventions and guards that run before routing: one trailing-slash form, HEAD
answered as GET, the request-body ceiling (counted as the body streams) and its read
timeout, and Letta's optional password mode with failed attempts throttled per address.
Pure ASGI, so they cost nothing on the hot path."""

import hmac
import json
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kelpie.api._limits import AuthThrottle, LimitedReceive, body_rejection
from kelpie.api.mcp_endpoint import MCP_PATH
from kelpie.env import Clock

REQUEST_BODY_BYTES_MAX: Final = 32 * 1024 * 1024
# Letta exempts health and readiness from password checks.
_OPEN_PATHS: Final = frozenset({"/v1/health", "/v1/ready"})
_CLOSE: Final = (b"connection", b"close")


async def _reply(
    send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*start, *headers]})
    await send({"type": "http.response.body", "body": body})


def _offered(headers: dict[bytes, bytes]) -> list[bytes]:
    """The passwords a request offers, as Letta's clients send them: `Authorization:
    Bearer <password>` or `X-BARE-PASSWORD: password <password>`. A header without its
    scheme offers nothing that can match (but still counts as an attempt)."""
    offered = []
    bearer = headers.get(b"authorization", b"")
    if bearer[:7].lower() == b"bearer ":
        offered.append(bearer[7:])
    bare = headers.get(b"x-bare-password", b"")
    if bare.startswith(b"password "):
        offered.append(bare[9:])
    return offered


def _attempted(headers: dict[bytes, bytes]) -> bool:
    return bool(headers.get(b"authorization") or headers.get(b"x-bare-password"))


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        password: str | None,
        clock: Clock,
        body_timeout_s: float,
        auth_failures_max: int,
        auth_failure_window_s: float,
    ) -> None:
        self._app = app
        self._password = None if password is None else password.encode()
        self._body_timeout_s = body_timeout_s
        self._throttle = AuthThrottle(
            clock, failures_max=auth_failures_max, window_s=auth_failure_window_s
        )

    def _authorised(self, password: bytes, headers: dict[bytes, bytes]) -> bool:
        # Every offered form is compared, in constant time, whichever matches.
        matched = [hmac.compare_digest(offered, password) for offered in _offered(headers)]
        return any(matched)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # The SDK calls collection roots with a slash, letta-code without: both are
            # served by the same route, and a redirect would cost a round trip.
            scope = {**scope, "path": path.rstrip("/") or "/"}
        if scope["method"] == "HEAD" and scope["path"] != MCP_PATH:
            # Starlette adds HEAD to GET routes, FastAPI does not; the server drops the body.
            scope = {**scope, "method": "GET"}
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > REQUEST_BODY_BYTES_MAX):
            detail = f"Request body over {REQUEST_BODY_BYTES_MAX} bytes"
            await _reply(send, 413, detail, (_CLOSE,))
            return
        if self._password is not None and scope["path"] not in _OPEN_PATHS:
            client = scope.get("client")
            address = client[0] if client else ""
            if (wait_s := self._throttle.retry_after_s(address)) is not None:
                detail = f"Too many failed authentication attempts; retry in {wait_s} s"
                await _reply(send, 429, detail, ((b"retry-after", str(wait_s).encode()),))
                return
            if not self._authorised(self._password, headers):
                if _attempted(headers):
                    self._throttle.failed(address)
                await _reply(send, 401, "Unauthorized")
                return
        if (length is None or length == b"0") and b"transfer-encoding" not in headers:
            await self._app(scope, receive, send)
            return
        await self._guard_body(scope, receive, send)

    async def _guard_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Runs a request that has a body, counting it as it streams (a chunked body has no
        Content-Length) and bounding each wait for it; a rejected body closes the
        connection, since the rest of it is still on the way."""
        limited = LimitedReceive(
            receive, bytes_max=REQUEST_BODY_BYTES_MAX, timeout_s=self._body_timeout_s
        )
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._app(scope, limited, tracked_send)
        except BaseException as error:
            rejected = body_rejection(error)
            if rejected is None:
                raise
            if not started:
                await _reply(send, rejected.status, rejected.detail, (_CLOSE,))
            # Otherwise the response is cut short, and the server closes the connection.

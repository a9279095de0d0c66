"""Transport conventions and guards that run before routing: one trailing-slash form, HEAD
answered as GET, the request-body ceiling (counted as the body streams) and its read
timeout, and authentication (the password or an API key, checked by `_auth`). Pure ASGI,
so they cost nothing on the hot path."""

import json
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kelpie.api._auth import CREDENTIAL_SCOPE_KEY, Authenticator, Refusal
from kelpie.api._limits import OPEN_PATHS, LimitedReceive, body_rejection
from kelpie.api.mcp_endpoint import MCP_PATH
from kelpie.env import Clock
from kelpie.service import ApiKeyCache

REQUEST_BODY_BYTES_MAX: Final = 32 * 1024 * 1024
_CLOSE: Final = (b"connection", b"close")


async def _reply(
    send: Send, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*start, *headers]})
    await send({"type": "http.response.body", "body": body})


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
        api_keys: ApiKeyCache | None = None,
    ) -> None:
        self._app = app
        self._body_timeout_s = body_timeout_s
        self._auth = Authenticator(
            password=password,
            keys=api_keys,
            clock=clock,
            failures_max=auth_failures_max,
            failure_window_s=auth_failure_window_s,
        )

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
        if scope["path"] not in OPEN_PATHS:
            client = scope.get("client")
            credential = await self._auth.admit(client[0] if client else "", headers)
            if isinstance(credential, Refusal):
                await _reply(send, credential.status, credential.detail, credential.headers)
                return
            if credential is not None:
                scope = {**scope, CREDENTIAL_SCOPE_KEY: credential}
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

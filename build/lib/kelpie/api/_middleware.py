"""Transport conventions and guards that run before routing: one trailing-slash form, the
request-body ceiling, and Letta's optional password mode. Pure ASGI, so they cost nothing
on the hot path."""

import hmac
import json
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

REQUEST_BODY_BYTES_MAX: Final = 32 * 1024 * 1024
# Letta exempts health and readiness from password checks.
_OPEN_PATHS: Final = frozenset({"/v1/health", "/v1/ready"})


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _authorised(headers: dict[bytes, bytes], password: str) -> bool:
    bearer = headers.get(b"authorization", b"").decode(errors="replace")
    bare = headers.get(b"x-bare-password", b"").decode(errors="replace")
    for offered in (bearer.removeprefix("Bearer "), bare.removeprefix("password ")):
        if offered and hmac.compare_digest(offered.encode(), password.encode()):
            return True
    return False


class GuardMiddleware:
    def __init__(self, app: ASGIApp, *, password: str | None) -> None:
        self._app = app
        self._password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            # The SDK calls collection roots with a slash, letta-code without: both are
            # served by the same route, and a redirect would cost a round trip.
            scope = {**scope, "path": path.rstrip("/") or "/"}
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > REQUEST_BODY_BYTES_MAX):
            await _reply(send, 413, f"Request body over {REQUEST_BODY_BYTES_MAX} bytes")
            return
        if (
            self._password is not None
            and scope["path"] not in _OPEN_PATHS
            and not _authorised(headers, self._password)
        ):
            await _reply(send, 401, "Unauthorized")
            return
        await self._app(scope, receive, send)

"""uvicorn's HTTP protocol with a deadline and a size cap for request heads.

uvicorn bounds the idle time between a response and the next request (keep-alive) but
nothing before a request's head is complete: a client that connects and sends nothing,
or sends its headers a byte at a time, holds the connection for as long as it likes. Here
the head must be complete within `header_timeout_s` of the connection being made (or of
the first byte of the next request on a kept-alive connection), and within
`HEADER_BYTES_MAX`; otherwise 408 or 431, and the connection is closed. (A request's body
is bounded at the ASGI level, by `GuardMiddleware`.)"""

import asyncio
import json
from typing import Any, ClassVar, Final, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The most a request head (request line and headers) may take; uvicorn's h11 default.
HEADER_BYTES_MAX: Final = 64 * 1024
HEADER_TIMEOUT_S_DEFAULT: Final = 10.0


def _response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class HeadGuardedProtocol(HttpToolsProtocol):
    header_timeout_s: ClassVar[float] = HEADER_TIMEOUT_S_DEFAULT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _expecting_head(self) -> bool:
        """Between requests, and not still receiving the body of one answered before it
        was read (uvicorn then discards that body as it arrives)."""
        return self.cycle is None or (self.cycle.response_complete and not self.cycle.more_body)

    def _arm(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        self._head_bytes = 0

    def _refuse(self, response: bytes | None) -> None:
        self._disarm()
        if not self.transport.is_closing():
            if response is not None:
                self.transport.write(response)
            self.transport.close()

    def _timed_out(self) -> None:
        self._head_deadline = None
        response = None
        # A connection that never began a request is closed without an answer.
        if self._head_bytes and self._expecting_head():
            detail = f"Request headers not received within {self.header_timeout_s:g} s"
            response = _response(408, "Request Timeout", detail)
        self._refuse(response)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, transport))
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
        elif self.cycle is not cycle:
            self._disarm()  # a request's head is complete
        elif self._between_requests():
            # The deadline runs from the connection or the request's first byte, and is
            # not pushed back by later bytes (or a trickle would hold it for ever). The
            # unread rest of an answered request's body gets the same time to arrive.
            self._arm()
            if self._expecting_head():
                self._head_bytes += len(data)
                if self._head_bytes > HEADER_BYTES_MAX:
                    detail = f"Request headers over {HEADER_BYTES_MAX} bytes"
                    self._refuse(_response(431, "Request Header Fields Too Large", detail))


def head_guarded_protocol(header_timeout_s: float) -> type[HeadGuardedProtocol]:
    """The protocol class to give uvicorn (`http=`), with this deadline."""
    return type(
        "HeadGuardedProtocol", (HeadGuardedProtocol,), {"header_timeout_s": header_timeout_s}
    )

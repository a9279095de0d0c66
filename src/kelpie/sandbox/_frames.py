"""The framing of the channel between the host and a sandboxed worker: each message is a
4-byte big-endian length and that many bytes of JSON. Framed, not "read to the end", because
code in the sandbox talks to the host several times in one execution (each call of one of
the agent's tools is a request and an answer) before its result ends the exchange.

Messages, worker to host: `{"call": name, "arguments": {...}}` (a tool call; the host
answers `{"ok": bool, "value": ...}`) or `{"result": {...}}` (the end). Host to worker: the
job, then one answer per call. Stdlib only: the worker imports it inside the sandbox."""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

HEADER_BYTES: Final = 4
_HEADER: Final = struct.Struct(">I")


class FrameTooLarge(Exception):
    pass


def encode(body: bytes) -> bytes:
    assert len(body) < 1 << 32, "a frame's length must fit its header"
    return _HEADER.pack(len(body)) + body


def body_length(header: bytes, limit: int) -> int:
    """The length a header announces; past `limit` the peer is misbehaving."""
    assert len(header) == HEADER_BYTES
    (length,) = _HEADER.unpack(header)
    if length > limit:
        raise FrameTooLarge(f"a message of {length} bytes is over the limit of {limit}")
    return int(length)

"""A fake OpenAI-compatible LLM server that the integration tests start as a subprocess.

    python tests/fakes/llm_server.py --port N

Kelpie talks to it through the official `openai` SDK (OPENAI_BASE_URL=http://127.0.0.1:N/v1),
so the real provider code runs end to end without a network or a model.

It uses only the standard library, so it starts in a few milliseconds and needs nothing
installed. Every endpoint is one entry in `ROUTES`, keyed by (method, path); a handler gets
the parsed request and returns a status and a JSON body. Scripted
`POST /v1/chat/completions` replies are meant to be added the same way: one handler plus
its entry in the table.

Served today:
    GET /v1/models    the model catalogue in `MODELS`
Anything else gets a 404 in OpenAI's error shape.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Final

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

MODEL_CREATED_AT: Final = 1_700_000_000
MODELS: Final[list[JsonValue]] = [
    {"id": "gpt-4o-mini", "object": "model", "created": MODEL_CREATED_AT, "owned_by": "test"},
    {
        "id": "text-embedding-3-small",
        "object": "model",
        "created": MODEL_CREATED_AT,
        "owned_by": "test",
    },
]
# Request bodies above this are refused rather than read into memory.
REQUEST_BODY_BYTES_MAX: Final = 16 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    body: JsonValue


@dataclasses.dataclass(frozen=True)
class Reply:
    status: HTTPStatus
    body: JsonValue


Handler = Callable[[Request], Reply]


def error_reply(status: HTTPStatus, message: str) -> Reply:
    """OpenAI's error envelope, which the `openai` SDK turns into its typed exceptions."""
    return Reply(
        status,
        {"error": {"message": message, "type": "invalid_request_error", "code": None}},
    )


def list_models(request: Request) -> Reply:
    return Reply(HTTPStatus.OK, {"object": "list", "data": MODELS})


ROUTES: Final[dict[tuple[str, str], Handler]] = {
    ("GET", "/v1/models"): list_models,
}


class FakeLLMRequestHandler(BaseHTTPRequestHandler):
    server_version = "KelpieFakeLLM/0.1"
    # Keep-alive, as the openai SDK's httpx pool expects; every reply sets Content-Length.
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        try:
            body = self._read_body()
        except ValueError as exc:
            self._send(error_reply(HTTPStatus.BAD_REQUEST, str(exc)))
            return
        handler = ROUTES.get((method, path.rstrip("/") or "/"))
        if handler is None:
            reply = error_reply(HTTPStatus.NOT_FOUND, f"no route for {method} {path}")
        else:
            reply = handler(Request(method=method, path=path, query=query, body=body))
        self._send(reply)

    def _read_body(self) -> JsonValue:
        length = int(self.headers.get("Content-Length") or 0)
        if length > REQUEST_BODY_BYTES_MAX:
            raise ValueError(f"request body of {length} bytes is over the limit")
        if length == 0:
            return None
        raw = self.rfile.read(length)
        try:
            parsed: JsonValue = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"request body is not JSON: {exc}") from exc
        return parsed

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Raising here unwinds serve_forever() so the listening socket is closed cleanly.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    server = ThreadingHTTPServer((args.host, args.port), FakeLLMRequestHandler)
    server.daemon_threads = True
    sys.stderr.write(f"fake LLM server listening on http://{args.host}:{args.port}/v1\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

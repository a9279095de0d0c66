"""A fake LLM server, OpenAI- and Anthropic-compatible, that tests start as a subprocess.

    python tests/fakes/llm_server.py --port N

Kelpie talks to it through the official SDKs (`openai` at http://127.0.0.1:N/v1, `anthropic`
at http://127.0.0.1:N), so the real provider code runs end to end without a network or a
model. Only the standard library is used: it starts in milliseconds and needs nothing.

Every endpoint is one entry in `ROUTES`, keyed by (method, path); a handler gets the parsed
request and returns a `Reply` (JSON) or an `SseReply` (a stream of server-sent events).

Served:
    GET    /v1/models             the model catalogue in `MODELS`
    POST   /v1/chat/completions   OpenAI Chat Completions, plain or `stream: true`
    POST   /v1/messages           Anthropic Messages, plain or `stream: true`
    POST   /_script               enqueue answers: a JSON list of entries (below)
    DELETE /_script               forget queued answers and recorded requests
    GET    /_requests             `{"requests": [{"path", "headers", "body"}, ...]}`: the
                                  model requests received since the last DELETE /_script
                                  (the latest 256)
Anything else gets a 404 in OpenAI's error shape.

Each model request takes the first queued entry it may take, whichever API it comes
through; when there is none the answer is the plain reply "OK". An entry is one of
    {"content": "...", "reasoning"?: "...", "tool_calls"?: [{"id", "name", "arguments"}],
     "finish_reason"?: "stop"|"tool_calls"|"length"|"content_filter",
     "usage"?: {"prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"}}
    {"error": {"status": 429, "message": "...", "retry_after"?: seconds, "type"?: "..."}}
and any entry may also carry
    "delay_s": N                  wait N seconds before answering (an entry that has only
                                  this key waits, then answers "OK")
    "disconnect_after_events": N  when streaming, drop the connection after N events
    "stream_error": {"after_events"?: N (1), "type"?: "overloaded_error", "message"?: "..."}
                                  when streaming, end the stream after N events with an
                                  error event, as providers do when failing mid-answer
    "when_tool": "name"           only a request that offers the model a tool of this name
                                  takes the entry; other requests pass it by. Lets a test
                                  script a client's turn without knowing what other model
                                  calls the server makes around it.
`finish_reason` defaults to "tool_calls" when there are tool calls, else "stop"; `usage`
fields default to rough counts of the request's and the answer's characters.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Final

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
Json = dict[str, Any]

MODEL_CREATED_AT: Final = 1_700_000_000
MODELS: Final[list[JsonValue]] = [
    {"id": model_id, "object": "model", "created": MODEL_CREATED_AT, "owned_by": "test"}
    for model_id in ("gpt-4o-mini", "text-embedding-3-small")
]
# Request bodies above this are refused rather than read into memory.
REQUEST_BODY_BYTES_MAX: Final = 16 * 1024 * 1024
# Streamed text is cut into pieces of this many characters.
STREAM_PIECE_CHARS: Final = 4
DEFAULT_REPLY: Final = "OK"
# How many of the latest model requests `GET /_requests` can report (a test clears first).
REQUESTS_KEPT_MAX: Final = 256
# Request headers that `GET /_requests` reports, for assertions about credentials.
RECORDED_HEADERS: Final = ("authorization", "x-api-key", "anthropic-version")
_ANTHROPIC_STOP_REASONS: Final = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}
_ANTHROPIC_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: JsonValue


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: object  # anything json.dumps takes
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class SseReply:
    events: tuple[str, ...]  # each a complete event, "data: ...\n\n" or "event: ...\n..."
    delay_s: float = 0.0
    # After this many events the stream stops: with `error_event` sent, or else dropped.
    cut_after_events: int | None = None
    error_event: str | None = None


Handler = Callable[[Request], Reply | SseReply]


class Script:
    """The queue of scripted answers and the log of model requests; handler threads share
    it, so every access holds the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: collections.deque[Json] = collections.deque()
        # The newest requests only: a benchmark sends hundreds a second for an hour, each
        # carrying a whole context (an unbounded log held 22 GB after six minutes).
        self._requests: collections.deque[Json] = collections.deque(maxlen=REQUESTS_KEPT_MAX)

    def enqueue(self, entries: list[Json]) -> int:
        with self._lock:
            self._entries.extend(entries)
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._requests.clear()

    def take(self, request: Request) -> Json:
        """Records `request` and returns the first entry it may take (the default if none)."""
        recorded = {
            name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers
        }
        offered = offered_tools(request.body)
        with self._lock:
            self._requests.append({"path": request.path, "headers": recorded, "body": request.body})
            for index, entry in enumerate(self._entries):
                wanted = entry.get("when_tool")
                if wanted is None or wanted in offered:
                    del self._entries[index]
                    return entry
            return {}

    def requests(self) -> list[Json]:
        with self._lock:
            return list(self._requests)


SCRIPT: Final = Script()


def offered_tools(body: JsonValue) -> frozenset[str]:
    """The names of the tools a model request offers, in either API's shape: OpenAI's
    `{"type": "function", "function": {"name": ...}}` or Anthropic's `{"name": ...}`."""
    tools = body.get("tools") if isinstance(body, dict) else None
    names: set[str] = set()
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        name = (function if isinstance(function, dict) else tool).get("name")
        if isinstance(name, str):
            names.add(name)
    return frozenset(names)


def error_reply(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """OpenAI's error envelope, which the `openai` SDK turns into its typed exceptions."""
    body: JsonValue = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return Reply(status, body, headers)


def sse(data: Json | str, event: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def pieces(text: str) -> list[str]:
    return [text[i : i + STREAM_PIECE_CHARS] for i in range(0, len(text), STREAM_PIECE_CHARS)]


@dataclasses.dataclass(frozen=True)
class Answer:
    """A scripted answer, normalised from an entry, in the terms both APIs share."""

    content: str | None
    reasoning: str | None
    tool_calls: list[Json]
    finish_reason: str
    usage: dict[str, int]  # prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens

    @classmethod
    def of(cls, entry: Json, request: Request) -> Answer:
        calls = list(entry.get("tool_calls") or [])
        content = entry.get("content")
        if content is None and not calls and "reasoning" not in entry:
            content = DEFAULT_REPLY
        output_chars = len(content or "") + sum(len(c["arguments"]) for c in calls)
        usage = {
            "prompt_tokens": len(json.dumps(request.body)) // 4 + 1,
            "completion_tokens": output_chars // 4 + 1,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            **(entry.get("usage") or {}),
        }
        finish_reason = entry.get("finish_reason") or ("tool_calls" if calls else "stop")
        return cls(content, entry.get("reasoning"), calls, finish_reason, usage)


AnswerFormat = Callable[[Answer, Json, Json], Reply | SseReply]


def _scripted(
    request: Request, answer: AnswerFormat, error: Callable[[Json], Reply]
) -> Reply | SseReply:
    body = request.body
    if not isinstance(body, dict):
        return error_reply(HTTPStatus.BAD_REQUEST, "the request body must be a JSON object")
    entry = SCRIPT.take(request)
    reply: Reply | SseReply
    if "error" in entry:
        reply = error(entry["error"])
    else:
        reply = answer(Answer.of(entry, request), body, entry)
    return dataclasses.replace(reply, delay_s=float(entry.get("delay_s", 0.0)))


def _stream_error(spec: Json) -> Json:
    return {"type": spec.get("type", "api_error"), "message": spec.get("message", "failed")}


def _cut(reply: SseReply, entry: Json) -> SseReply:
    error = entry.get("stream_error")
    after = error.get("after_events", 1) if error else entry.get("disconnect_after_events")
    return dataclasses.replace(reply, cut_after_events=after)


def _retry_after(spec: Json) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", str(spec["retry_after"])),) if "retry_after" in spec else ()


# --- OpenAI Chat Completions ---------------------------------------------------------


def _openai_usage(answer: Answer) -> Json:
    usage = answer.usage
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        "prompt_tokens_details": {"cached_tokens": usage["cached_tokens"]},
        "completion_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
    }


def _openai_answer(answer: Answer, body: Json, entry: Json) -> Reply | SseReply:
    base = {"id": "chatcmpl-fake", "created": MODEL_CREATED_AT, "model": body.get("model")}
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _openai_chunks(answer, base, include_usage)
        error = entry.get("stream_error")
        error_event = sse({"error": _stream_error(error)}) if error else None
        return _cut(SseReply(tuple(events), error_event=error_event), entry)
    message: Json = {"role": "assistant", "content": answer.content}
    if answer.reasoning is not None:
        message["reasoning_content"] = answer.reasoning
    if answer.tool_calls:
        message["tool_calls"] = [_openai_call(c) for c in answer.tool_calls]
    choice = {"index": 0, "message": message, "finish_reason": answer.finish_reason}
    completion = {**base, "object": "chat.completion", "choices": [choice]}
    return Reply(HTTPStatus.OK, {**completion, "usage": _openai_usage(answer)})


def _openai_call(call: Json) -> Json:
    function = {"name": call["name"], "arguments": call["arguments"]}
    return {"id": call["id"], "type": "function", "function": function}


def _openai_chunks(answer: Answer, base: Json, include_usage: bool) -> list[str]:
    base = {**base, "object": "chat.completion.chunk"}
    if include_usage:  # as OpenAI does: every chunk says `usage: null` but the last
        base["usage"] = None

    def chunk(delta: Json, finish_reason: str | None = None) -> str:
        return sse(
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        )

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"reasoning_content": piece}) for piece in pieces(answer.reasoning or "")]
    events += [chunk({"content": piece}) for piece in pieces(answer.content or "")]
    for index, call in enumerate(answer.tool_calls):
        first = {**_openai_call(call), "index": index}
        first["function"] = {"name": call["name"], "arguments": ""}
        events.append(chunk({"tool_calls": [first]}))
        for piece in pieces(call["arguments"]):
            fragment = {"index": index, "function": {"arguments": piece}}
            events.append(chunk({"tool_calls": [fragment]}))
    events.append(chunk({}, answer.finish_reason))
    if include_usage:
        events.append(sse({**base, "choices": [], "usage": _openai_usage(answer)}))
    return [*events, sse("[DONE]")]


def _openai_error(spec: Json) -> Reply:
    message = spec.get("message", "scripted failure")
    return error_reply(spec.get("status", 500), message, _retry_after(spec))


def chat_completions(request: Request) -> Reply | SseReply:
    return _scripted(request, _openai_answer, _openai_error)


# --- Anthropic Messages --------------------------------------------------------------


def _anthropic_blocks(answer: Answer) -> list[Json]:
    blocks: list[Json] = []
    if answer.reasoning is not None:
        blocks.append({"type": "thinking", "thinking": answer.reasoning, "signature": "fake"})
    if answer.content is not None:
        blocks.append({"type": "text", "text": answer.content})
    for call in answer.tool_calls:
        arguments = json.loads(call["arguments"] or "{}")
        blocks.append(
            {"type": "tool_use", "id": call["id"], "name": call["name"], "input": arguments}
        )
    return blocks


def _anthropic_answer(answer: Answer, body: Json, entry: Json) -> Reply | SseReply:
    usage = answer.usage
    message: Json = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": _anthropic_blocks(answer),
        "stop_reason": _ANTHROPIC_STOP_REASONS.get(answer.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage["prompt_tokens"] - usage["cached_tokens"],
            "output_tokens": usage["completion_tokens"],
            "cache_read_input_tokens": usage["cached_tokens"],
            "cache_creation_input_tokens": 0,
            "output_tokens_details": {"thinking_tokens": usage["reasoning_tokens"]},
        },
    }
    if not body.get("stream"):
        return Reply(HTTPStatus.OK, message)
    error = entry.get("stream_error")
    error_event = sse({"type": "error", "error": _stream_error(error)}, "error") if error else None
    return _cut(SseReply(tuple(_anthropic_events(message)), error_event=error_event), entry)


def _block_stream(block: Json) -> tuple[Json, str, str, str]:
    """A block as it starts empty, its delta type and field, and the text its deltas carry."""
    if block["type"] == "thinking":
        return (
            {**block, "thinking": "", "signature": ""},
            "thinking_delta",
            "thinking",
            block["thinking"],
        )
    if block["type"] == "tool_use":
        # A call without arguments streams no JSON at all, as Anthropic does.
        text = json.dumps(block["input"]) if block["input"] else ""
        return {**block, "input": {}}, "input_json_delta", "partial_json", text
    return {**block, "text": ""}, "text_delta", "text", block["text"]


def _anthropic_events(message: Json) -> list[str]:
    def event(data: Json) -> str:
        return sse(data, data["type"])

    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    events = [event({"type": "message_start", "message": start}), event({"type": "ping"})]
    for index, block in enumerate(message["content"]):
        empty, kind, field, text = _block_stream(block)
        events.append(
            event({"type": "content_block_start", "index": index, "content_block": empty})
        )
        for piece in pieces(text):
            delta = {"type": kind, field: piece}
            events.append(event({"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(event({"type": "content_block_stop", "index": index}))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(event({"type": "message_delta", "delta": stop, "usage": message["usage"]}))
    return [*events, event({"type": "message_stop"})]


def _anthropic_error(spec: Json) -> Reply:
    status = spec.get("status", 500)
    error = {
        "type": spec.get("type") or _ANTHROPIC_ERROR_TYPES.get(status, "api_error"),
        "message": spec.get("message", "scripted failure"),
    }
    return Reply(status, {"type": "error", "error": error}, _retry_after(spec))


def messages(request: Request) -> Reply | SseReply:
    return _scripted(request, _anthropic_answer, _anthropic_error)


# --- Control -------------------------------------------------------------------------


def list_models(request: Request) -> Reply:
    return Reply(HTTPStatus.OK, {"object": "list", "data": MODELS})


def enqueue_script(request: Request) -> Reply:
    entries = request.body
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return error_reply(HTTPStatus.BAD_REQUEST, "POST /_script takes a JSON list of objects")
    queued = SCRIPT.enqueue([entry for entry in entries if isinstance(entry, dict)])
    return Reply(HTTPStatus.OK, {"queued": queued})


def clear_script(request: Request) -> Reply:
    SCRIPT.clear()
    return Reply(HTTPStatus.OK, {"queued": 0})


def list_requests(request: Request) -> Reply:
    return Reply(HTTPStatus.OK, {"requests": SCRIPT.requests()})


ROUTES: Final[dict[tuple[str, str], Handler]] = {
    ("GET", "/v1/models"): list_models,
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/messages"): messages,
    ("POST", "/_script"): enqueue_script,
    ("DELETE", "/_script"): clear_script,
    ("GET", "/_requests"): list_requests,
}


class FakeLLMRequestHandler(BaseHTTPRequestHandler):
    server_version = "KelpieFakeLLM/0.2"
    # Keep-alive, as the SDKs' connection pools expect: every reply sets Content-Length or
    # is chunked.
    protocol_version = "HTTP/1.1"
    # Replies go out in several writes; with Nagle on, the client's delayed ACK stalls
    # each model call by ~40 ms, which would swamp every latency Kelpie is measured by.
    disable_nagle_algorithm = True

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
            reply: Reply | SseReply = error_reply(
                HTTPStatus.NOT_FOUND, f"no route for {method} {path}"
            )
        else:
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply = handler(Request(method, path, query, headers, body))
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        try:
            if isinstance(reply, SseReply):
                self._send_events(reply)
            else:
                self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (its timeout was shorter than the scripted delay).
            self.close_connection = True

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
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_events(self, reply: SseReply) -> None:
        """Streams the events as HTTP chunks, one event each, so clients see them arrive."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for sent, event in enumerate(reply.events):
            if sent == reply.cut_after_events:
                if reply.error_event is None:
                    # No terminating chunk: the client sees the connection drop mid-answer.
                    self.close_connection = True
                    return
                self._send_chunk(reply.error_event)
                break
            self._send_chunk(event)
        self.wfile.write(b"0\r\n\r\n")

    def _send_chunk(self, event: str) -> None:
        data = event.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


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

"""Opening the SDK transport a spec names: a stdio server process (its environment built
here, its stderr kept in a bounded tail), or an HTTP client for SSE / streamable HTTP that
sends the spec's headers and remembers the last HTTP status, for error messages."""

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Final, TextIO

import anyio
import httpx2
from mcp.client._transport import TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from kelpie.mcp._types import McpServerSpec, StdioLaunch, StdioLauncher

# How much of a stdio server's stderr is kept (its end), to quote when it fails.
STDERR_TAIL_BYTES: Final = 4096
MCP_SESSION_ID_HEADER: Final = "mcp-session-id"
# An SSE stream may stay quiet between calls; the health ping finds a dead one.
SSE_READ_TIMEOUT_S: Final = 24 * 3600.0


class CommandNotFound(Exception):
    """A stdio spec's command is not an executable on the server's PATH."""


class StderrTail:
    """A pipe for a server's stderr and a reader keeping its last STDERR_TAIL_BYTES, so a
    chatty server neither fills Kelpie's stderr nor grows memory."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self._reader: IO[bytes] = os.fdopen(read_fd, "rb", buffering=0)
        self.writer: TextIO | None = os.fdopen(write_fd, "w")
        self._tail = bytearray()
        self._eof = asyncio.Event()
        self._transport: asyncio.ReadTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.connect_read_pipe(lambda: _TailProtocol(self), self._reader)

    def close_writer(self) -> None:
        """Drops Kelpie's copy of the write end (once the server holds its own), so the tail
        reaches end-of-file when the server exits."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def feed(self, data: bytes) -> None:
        self._tail += data
        del self._tail[:-STDERR_TAIL_BYTES]
        assert len(self._tail) <= STDERR_TAIL_BYTES, len(self._tail)

    def set_eof(self) -> None:
        self._eof.set()

    async def text(self, *, wait_s: float) -> str:
        """The tail so far, after waiting up to `wait_s` for the server to finish writing."""
        if self._transport is None:
            return ""  # no server was started
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self._eof.wait()
        return self._tail.decode(errors="replace").strip()

    def close(self) -> None:
        self.close_writer()
        if self._transport is not None:
            self._transport.close()
        else:
            self._reader.close()


class _TailProtocol(asyncio.Protocol):
    def __init__(self, tail: StderrTail) -> None:
        self._tail = tail

    def data_received(self, data: bytes) -> None:
        self._tail.feed(data)

    def eof_received(self) -> bool | None:
        self._tail.set_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._tail.set_eof()


class HttpStatus:
    """What a remote transport's HTTP responses said: the last status (for error messages),
    and whether the server no longer knows our session (a 404 to a request that named it,
    as the protocol prescribes: the request was not run, the connection must be remade)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.session_gone = False

    async def record(self, response: httpx2.Response) -> None:
        self.last = response.status_code
        if response.status_code == 404 and MCP_SESSION_ID_HEADER in response.request.headers:
            self.session_gone = True


def stdio_environment(spec: McpServerSpec) -> dict[str, str]:
    """The spec's environment, plus Kelpie's PATH when it sets none (so `npx` and `uvx`
    resolve). Nothing else of Kelpie's environment: it holds LLM keys. (The SDK adds its
    own short list of harmless variables the spec does not set: HOME, LOGNAME, SHELL, TERM,
    USER.)"""
    env = dict(spec.env)
    if "PATH" not in env:
        env["PATH"] = os.environ.get("PATH", os.defpath)
    return env


def resolve_command(command: str, env: dict[str, str]) -> str:
    """The executable `command` names, looked up on the server's own PATH."""
    found = shutil.which(command, path=env["PATH"])
    if found is None:
        raise CommandNotFound(command)
    return found


@contextlib.asynccontextmanager
async def open_stdio(
    spec: McpServerSpec, stderr: StderrTail, launcher: StdioLauncher | None
) -> AsyncIterator[TransportStreams]:
    """Starts the server: through `launcher` (confined), or as its spec says (None)."""
    assert spec.transport == "stdio", spec.transport
    assert spec.command is not None, "a stdio server needs a command"
    env = stdio_environment(spec)
    command = resolve_command(spec.command, env)
    if launcher is None:
        launch = StdioLaunch(command=command, args=spec.args, env=env)
    else:
        launch = await launcher.launch(spec, command, env)
    try:
        parameters = StdioServerParameters(
            command=launch.command, args=list(launch.args), env=dict(launch.env)
        )
        assert stderr.writer is not None, "the stderr pipe is given to one server"
        await stderr.start()
        try:
            async with stdio_client(parameters, errlog=stderr.writer) as streams:
                stderr.close_writer()
                yield streams
        finally:
            stderr.close_writer()
    finally:
        # The SDK has stopped the process (or given up on it): what the launcher took for
        # it goes back, even when the connection is being cancelled.
        with anyio.CancelScope(shield=True):
            await launch.release()


@contextlib.asynccontextmanager
async def open_remote(
    spec: McpServerSpec, status: HttpStatus, *, connect_timeout_s: float
) -> AsyncIterator[TransportStreams]:
    assert spec.transport in ("sse", "streamable_http"), spec.transport
    assert spec.url is not None, "a remote server needs a url"
    # No read timeout: a call's own timeout bounds it, and a quiet stream is not a dead one.
    timeout = httpx2.Timeout(connect_timeout_s, read=None)
    hooks: dict[str, list[Callable[[httpx2.Response], Awaitable[None]]]] = {
        "response": [status.record]
    }
    if spec.transport == "sse":

        def client_factory(
            headers: dict[str, str] | None = None,
            timeout: httpx2.Timeout | None = None,
            auth: httpx2.Auth | None = None,
        ) -> httpx2.AsyncClient:
            return httpx2.AsyncClient(
                headers=headers, timeout=timeout, auth=auth, event_hooks=hooks
            )

        async with sse_client(
            spec.url,
            headers=dict(spec.headers),
            timeout=connect_timeout_s,
            sse_read_timeout=SSE_READ_TIMEOUT_S,
            httpx_client_factory=client_factory,
        ) as streams:
            yield streams
        return
    client = httpx2.AsyncClient(headers=dict(spec.headers), timeout=timeout, event_hooks=hooks)
    async with client, streamable_http_client(spec.url, http_client=client) as streams:
        yield streams

"""One live connection to one MCP server, owned by one task.

The SDK's transports and `ClientSession` are async context managers that must be entered
and left by the same task, so each connection has an owner task holding them open; callers
send requests through the session (its streams may be used from any task) and closing is
a cancel of the owner's scope. The owner also relays what the server sends, so it sees the
end of the stream (a stdio server that exited) at once and marks the connection lost.

    owner task:  [connect, bounded by the connect timeout] -> [hold open] -> [leave the SDK's
                 context managers: the stdio server process (group) is stopped]
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio
import httpx2
from mcp import ClientSession, types
from mcp.shared._stream_protocols import ReadStream
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from kelpie.mcp._failures import describe_connect_failure, exception_leaves
from kelpie.mcp._results import call_result_of, error_result, tools_of
from kelpie.mcp._transports import HttpStatus, StderrTail, open_remote, open_stdio
from kelpie.mcp._types import (
    McpCallResult,
    McpServerSpec,
    McpTool,
    McpUnavailable,
    StdioLauncher,
)

T = TypeVar("T")

logger = logging.getLogger(__name__)

# How long closing waits for the owner task (the SDK's own stdio shutdown is bounded by
# ~6.5 s: stdin close, SIGTERM, SIGKILL) before cancelling it outright.
CLOSE_TIMEOUT_S: Final = 10.0
# How long a failed start-up waits for the server's last stderr lines.
STDERR_WAIT_S: Final = 0.5
# How long a lost connection's owner gets to record why, before a call is judged.
LOSS_WAIT_S: Final = 1.0
# Pages of a tools listing, at most (a server that keeps paging is broken).
LIST_PAGES_MAX: Final = 100


class ConnectionLost(Exception):
    """The connection ended under a request. `reached` is False only when the request
    provably never reached the server (the HTTP connection was refused)."""

    def __init__(self, *, reached: bool) -> None:
        super().__init__("the MCP connection was lost")
        self.reached = reached


class Connection:
    def __init__(
        self,
        spec: McpServerSpec,
        *,
        connect_timeout_s: float,
        clock: Callable[[], float],
        stdio_launcher: StdioLauncher | None = None,
    ) -> None:
        self.spec = spec
        self._stdio_launcher = stdio_launcher
        self.last_used = -math.inf
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._session: ClientSession | None = None
        self._initialized = asyncio.Event()
        self._owner: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._closing = False
        self._eof = False
        self._failure: BaseException | None = None
        self._failure_text: str | None = None
        self._stderr = StderrTail() if spec.transport == "stdio" else None
        self._http_status = HttpStatus()

    @property
    def lost(self) -> bool:
        """The server closed the stream or forgot our session, or the transport failed, or
        the connection closed."""
        return (
            self._eof or self._http_status.session_gone or self._owner is None or self._owner.done()
        )

    async def open(self) -> None:
        """Connects and initializes, within the connect timeout. Raises McpUnavailable."""
        assert self._owner is None, "a connection opens once"
        self._owner = asyncio.create_task(self._own(), name=f"mcp-connection:{self.spec.key}")
        initialized = asyncio.create_task(self._initialized.wait())
        try:
            await asyncio.wait(
                [self._owner, initialized],
                timeout=self._connect_timeout_s + CLOSE_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            initialized.cancel()
        if self._initialized.is_set():
            assert self._session is not None, "initialized without a session"
            return
        if not self._owner.done():
            await self.aclose()
        if self._failure_text is not None:
            raise McpUnavailable(self._failure_text)
        if self._closing:
            raise McpUnavailable(
                f"MCP server '{self.spec.name}' was closed while connecting (it was changed "
                "or removed, or Kelpie is stopping)."
            )
        raise McpUnavailable(
            f"MCP server '{self.spec.name}' did not answer within "
            f"{self._connect_timeout_s:g} s while connecting."
        )

    async def aclose(self) -> None:
        """Leaves the SDK's context managers (a stdio server is stopped) and waits for it."""
        self._closing = True
        if self._scope is not None:
            self._scope.cancel()
        owner = self._owner
        if owner is None or owner.done():
            return
        await asyncio.wait([owner], timeout=CLOSE_TIMEOUT_S)
        if not owner.done():
            logger.warning("MCP server %r did not close in time; cancelling it", self.spec.name)
            owner.cancel()
            await asyncio.wait([owner], timeout=CLOSE_TIMEOUT_S)

    async def ping(self, *, timeout_s: float) -> bool:
        """Whether the server answers a ping in time (a cheap check of a quiet connection)."""
        session = self._session
        assert session is not None, "ping before open"
        try:
            with anyio.fail_after(timeout_s):
                await session.send_ping()
        except (TimeoutError, MCPError):
            return False
        self.last_used = self._clock()
        return True

    async def list_tools(self, *, timeout_s: float) -> list[McpTool]:
        async def listing(session: ClientSession) -> list[types.Tool]:
            listed: list[types.Tool] = []
            cursor: str | None = None
            for _ in range(LIST_PAGES_MAX):
                params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await session.list_tools(params=params)
                listed.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    return listed
            raise McpUnavailable(
                f"MCP server '{self.spec.name}' listed more than {LIST_PAGES_MAX} pages of tools."
            )

        try:
            listed = await self._request("the tools listing", timeout_s, listing)
        except MCPError as exc:
            raise McpUnavailable(
                f"MCP server '{self.spec.name}' refused to list its tools: {exc.message}"
            ) from exc
        return tools_of(listed)

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any], *, timeout_s: float
    ) -> McpCallResult:
        async def calling(session: ClientSession) -> types.CallToolResult:
            return await session.call_tool(tool_name, arguments)

        try:
            result = await self._request(f"the call to tool '{tool_name}'", timeout_s, calling)
        except MCPError as exc:
            # The server answered the call with an error (unknown tool, bad arguments).
            return error_result(f"MCP error {exc.code}: {exc.message}")
        return call_result_of(result)

    async def _request(
        self, what: str, timeout_s: float, send: Callable[[ClientSession], Awaitable[T]]
    ) -> T:
        """Sends one request; a timeout or a lost connection becomes our errors, a server's
        JSON-RPC error stays an MCPError."""
        session = self._session
        assert session is not None, "request before open"
        try:
            with anyio.fail_after(timeout_s):
                answer = await send(session)
        except TimeoutError:
            raise self._timed_out(what, timeout_s) from None
        except MCPError as exc:
            if self._http_status.session_gone:
                raise ConnectionLost(reached=False) from None
            if exc.code == REQUEST_TIMEOUT:
                raise self._timed_out(what, timeout_s) from None
            if exc.code == CONNECTION_CLOSED:
                raise ConnectionLost(reached=await self._request_reached()) from None
            raise
        self.last_used = self._clock()
        return answer

    def _timed_out(self, what: str, timeout_s: float) -> McpUnavailable:
        return McpUnavailable(
            f"MCP server '{self.spec.name}' did not answer {what} within {timeout_s:g} s."
        )

    async def _request_reached(self) -> bool:
        """After a lost connection: False only if the transport failed to connect at all (a
        refused HTTP connection), so the request never left."""
        if self.spec.transport == "stdio" or self._owner is None:
            return True
        await asyncio.wait([self._owner], timeout=LOSS_WAIT_S)
        failure = self._failure
        if failure is None:
            return True
        leaves = exception_leaves(failure)
        return not leaves or not all(isinstance(leaf, httpx2.ConnectError) for leaf in leaves)

    async def _own(self) -> None:
        deadline = anyio.current_time() + self._connect_timeout_s
        try:
            with anyio.CancelScope(deadline=deadline) as scope:
                self._scope = scope
                if self._closing:
                    scope.cancel()
                async with contextlib.AsyncExitStack() as stack:
                    await self._connect(stack, scope)
                    await anyio.sleep_forever()
        except Exception as exc:
            self._failure = exc
        finally:
            if self._initialized.is_set():
                if not self._closing:
                    logger.info("MCP server %r disconnected", self.spec.name)
            elif not self._closing:
                self._failure_text = await self._describe_failure()
            if self._stderr is not None:
                self._stderr.close()

    async def _connect(self, stack: contextlib.AsyncExitStack, scope: anyio.CancelScope) -> None:
        if self._stderr is not None:
            streams = await stack.enter_async_context(
                open_stdio(self.spec, self._stderr, self._stdio_launcher)
            )
        else:
            streams = await stack.enter_async_context(
                open_remote(self.spec, self._http_status, connect_timeout_s=self._connect_timeout_s)
            )
        received, to_server = streams
        sink, source = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        relay = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(relay.cancel_scope.cancel)
        relay.start_soon(self._relay, received, sink, scope)
        session = await stack.enter_async_context(ClientSession(source, to_server))
        await session.initialize()
        scope.deadline = math.inf
        self._session = session
        self.last_used = self._clock()
        self._initialized.set()

    async def _relay(
        self,
        received: ReadStream[SessionMessage | Exception],
        sink: anyio.abc.ObjectSendStream[SessionMessage | Exception],
        scope: anyio.CancelScope,
    ) -> None:
        """Passes the server's messages to the session; at their end (the server exited or
        the transport failed) marks the connection lost and ends the owner, so the next
        request reconnects instead of finding out by failing."""
        async with sink:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                async for item in received:
                    await sink.send(item)
        self._eof = True
        scope.cancel()

    async def _describe_failure(self) -> str:
        stderr = None
        if self._stderr is not None:
            stderr = await self._stderr.text(wait_s=STDERR_WAIT_S)
        return describe_connect_failure(
            self.spec,
            self._failure,
            ended=self._eof,
            timeout_s=self._connect_timeout_s,
            http_status=self._http_status.last,
            stderr=stderr,
        )

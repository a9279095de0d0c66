"""`McpConnections`: the production `McpClients`, over the official `mcp` SDK.

One connection per spec key, made on first use and kept (Letta opened one per call).
Concurrent first uses share one connect. A connection found lost before a request is
replaced at once; failed connects back off (the first retry at once, then 0.5 s doubling to
30 s) and, meanwhile, requests fail fast saying when the next attempt is. A quiet connection
is pinged before it is used. A call whose connection died under it is not retried: it may
have had effects.
"""

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Final, final

from kelpie.mcp._connection import Connection, ConnectionLost
from kelpie.mcp._types import (
    MCP_CALL_TIMEOUT_S_DEFAULT,
    MCP_CONNECT_TIMEOUT_S,
    MCP_LIST_TIMEOUT_S,
    McpCallResult,
    McpServerSpec,
    McpTool,
    McpUnavailable,
    StdioLauncher,
)

logger = logging.getLogger(__name__)

# A connection quiet for longer is pinged before its next request.
MCP_IDLE_PING_AFTER_S: Final = 30.0
MCP_PING_TIMEOUT_S: Final = 5.0
# Waits between failed connects: none before the first retry, then doubling to the cap.
MCP_RECONNECT_DELAY_S_FIRST: Final = 0.5
MCP_RECONNECT_DELAY_S_MAX: Final = 30.0


def reconnect_delay_s(failures: int) -> float:
    """The wait before the next connect, after `failures` failed connects in a row."""
    assert failures >= 1, failures
    if failures == 1:
        return 0.0
    return min(MCP_RECONNECT_DELAY_S_FIRST * 2.0 ** (failures - 2), MCP_RECONNECT_DELAY_S_MAX)


@dataclasses.dataclass(eq=False)
class _Link:
    """What is known about one server key: its live connection, the connect under way,
    and the failed connects behind us."""

    spec: McpServerSpec
    connection: Connection | None = None
    connecting: asyncio.Task[Connection] | None = None
    opening: Connection | None = None
    failures: int = 0
    retry_at: float = -math.inf
    last_error: str = ""
    forgotten: bool = False


@final
class McpConnections:
    """Keeps one connection per MCP server and speaks to it; see the module docstring.

    `clock` gives seconds for idleness and back-off (the event loop's clock by default).
    `stdio_launcher` starts stdio servers (production: confined by the sandbox); without
    one they run as their spec says, unconfined."""

    def __init__(
        self,
        *,
        stdio_launcher: StdioLauncher | None = None,
        clock: Callable[[], float] | None = None,
        connect_timeout_s: float = MCP_CONNECT_TIMEOUT_S,
        list_timeout_s: float = MCP_LIST_TIMEOUT_S,
        idle_ping_after_s: float = MCP_IDLE_PING_AFTER_S,
        ping_timeout_s: float = MCP_PING_TIMEOUT_S,
    ) -> None:
        assert connect_timeout_s > 0, connect_timeout_s
        assert list_timeout_s > 0, list_timeout_s
        self._stdio_launcher = stdio_launcher
        self._clock = clock or _loop_time
        self._connect_timeout_s = connect_timeout_s
        self._list_timeout_s = list_timeout_s
        self._idle_ping_after_s = idle_ping_after_s
        self._ping_timeout_s = ping_timeout_s
        self._links: dict[str, _Link] = {}
        self._closings: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def connected_count(self) -> int:
        """Servers with a live connection now (for the server's metrics)."""
        return sum(1 for link in self._links.values() if link.connection is not None)

    async def list_tools(self, server: McpServerSpec) -> list[McpTool]:
        """The server's tools (connecting first if need be). Raises McpUnavailable."""
        link = await self._link(server)
        connection = await self._usable(link)
        try:
            return await connection.list_tools(timeout_s=self._list_timeout_s)
        except ConnectionLost:
            self._discard(link, connection)
        # Listing has no effects: after a lost connection it is sent again, once.
        connection = await self._usable(link)
        try:
            return await connection.list_tools(timeout_s=self._list_timeout_s)
        except ConnectionLost:
            self._discard(link, connection)
            raise McpUnavailable(
                f"MCP server '{server.name}' disconnected while listing its tools."
            ) from None

    async def call_tool(
        self,
        server: McpServerSpec,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        timeout_s: float = MCP_CALL_TIMEOUT_S_DEFAULT,
    ) -> McpCallResult:
        """Calls one tool over the kept connection; after a dead connection, reconnects once
        and retries only if the call cannot have reached the server. Raises McpUnavailable
        (unreachable, crashed mid-call, timed out); a tool's own failure is `is_error`."""
        assert timeout_s > 0, timeout_s
        link = await self._link(server)
        for attempt in (1, 2):
            connection = await self._usable(link)
            try:
                return await connection.call_tool(tool_name, dict(arguments), timeout_s=timeout_s)
            except ConnectionLost as lost:
                self._discard(link, connection)
                if lost.reached or attempt == 2:
                    raise McpUnavailable(
                        f"MCP server '{server.name}' crashed or disconnected during the call "
                        f"to tool '{tool_name}'; the call was not retried, as it may have had "
                        "effects."
                    ) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def forget(self, key: str) -> None:
        """Closes the connection kept for `key` (the server was changed or deleted)."""
        link = self._links.pop(key, None)
        if link is None:
            return
        link.forgotten = True
        closing = [c for c in (link.connection, link.opening) if c is not None]
        link.connection = None
        await asyncio.gather(*(connection.aclose() for connection in closing))

    async def close(self) -> None:
        """Closes every connection (stdio servers are stopped) and refuses later requests."""
        self._closed = True
        for key in list(self._links):
            await self.forget(key)
        while self._closings:
            await asyncio.gather(*self._closings)

    async def _link(self, spec: McpServerSpec) -> _Link:
        if self._closed:
            raise McpUnavailable(f"MCP server '{spec.name}' cannot be reached: Kelpie is stopping.")
        link = self._links.get(spec.key)
        if link is not None and link.spec != spec:
            await self.forget(spec.key)
            link = None
        if link is None:
            link = self._links[spec.key] = _Link(spec)
        return link

    async def _usable(self, link: _Link) -> Connection:
        """A connection that is not known to be dead: the kept one (pinged first if quiet),
        else a new one."""
        for _ in range(2):
            connection = await self._connected(link)
            if connection.lost:
                self._discard(link, connection)
                continue
            quiet_s = self._clock() - connection.last_used
            if quiet_s >= self._idle_ping_after_s and not await connection.ping(
                timeout_s=self._ping_timeout_s
            ):
                logger.info("MCP server %r did not answer a ping; reconnecting", link.spec.name)
                self._discard(link, connection)
                continue
            return connection
        raise McpUnavailable(
            f"MCP server '{link.spec.name}' disconnected again right after connecting."
        )

    async def _connected(self, link: _Link) -> Connection:
        if link.connection is not None:
            return link.connection
        if link.connecting is None:
            wait_s = link.retry_at - self._clock()
            if wait_s > 0:
                raise McpUnavailable(f"{link.last_error} (Kelpie tries again in {wait_s:.1f} s.)")
            link.connecting = asyncio.create_task(self._connect(link))
            link.connecting.add_done_callback(_mark_retrieved)
        # Shielded: a caller that gives up does not cancel the connect others wait for.
        return await asyncio.shield(link.connecting)

    async def _connect(self, link: _Link) -> Connection:
        connection = Connection(
            link.spec,
            connect_timeout_s=self._connect_timeout_s,
            clock=self._clock,
            stdio_launcher=self._stdio_launcher,
        )
        link.opening = connection
        try:
            await connection.open()
        except McpUnavailable as exc:
            link.failures += 1
            link.retry_at = self._clock() + reconnect_delay_s(link.failures)
            link.last_error = str(exc)
            raise
        finally:
            link.opening = None
            link.connecting = None
        if link.forgotten:
            await connection.aclose()
            raise McpUnavailable(f"MCP server '{link.spec.name}' was changed or removed.")
        link.failures = 0
        link.connection = connection
        return connection

    def _discard(self, link: _Link, connection: Connection) -> None:
        """Drops a dead connection; it closes in the background (`close` waits for that)."""
        if link.connection is connection:
            link.connection = None
        closing = asyncio.create_task(connection.aclose())
        self._closings.add(closing)
        closing.add_done_callback(self._closings.discard)


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _mark_retrieved(task: asyncio.Task[Connection]) -> None:
    # Every waiter sees the failure; this keeps asyncio from logging it as unretrieved when
    # all of them gave up first.
    if not task.cancelled():
        task.exception()

"""The simulation's MCP servers: `SimMcp` stands in for `McpConnections` (no processes, no
sockets: the simulator's loop runs neither) with deterministic servers in process.

A simulated server is named by its spec: the stdio command `sim-mcp` with one argument, or
a remote URL under `http://mcp.sim/`, gives the server whose tools are `<prefix>_add`,
`<prefix>_check` and `<prefix>_lookup`, `<prefix>` being that argument (or the URL's last
part). Results are a function of the arguments (`mcp_result`); `check` of an odd number is
the tool's own error (`is_error`). Any other command is missing, as a real one would be.

It models the connection as `McpConnections` keeps it: made on first use (taking
`MCP_START_S` of virtual time; concurrent first uses share it), kept and reused, lost when
the server dies mid-call (the next call reconnects) or when Kelpie forgets it. Faults from
the plan (`McpFaultInjector`, stream `faults/mcp`): `mcp_crash` (the server dies mid-call:
McpUnavailable, and every call in flight on that connection fails with it), `mcp_timeout`
(the call stalls: McpUnavailable after `timeout_s` of virtual time; the connection stays)
and `mcp_slow_start` (connecting takes a drawn time; past the connect timeout it fails).
Connects and losses are counted per server, so the harness can check connections are reused
(`connects <= losses + 1`). Each incarnation of Kelpie has its own; the fault stream spans
the run."""

import asyncio
import collections
import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from kelpie.env import Clock, Entropy
from kelpie.mcp import (
    MCP_CALL_TIMEOUT_S_DEFAULT,
    MCP_CONNECT_TIMEOUT_S,
    McpCallResult,
    McpServerSpec,
    McpTool,
    McpUnavailable,
)
from kelpie.sim._faults import MCP_CALL_FAULTS, MCP_SLOW_START_TIMEOUTS_MAX, FaultPlan
from kelpie.sim._store import current_request

SIM_MCP_COMMAND: Final = "sim-mcp"
SIM_MCP_URL_PREFIX: Final = "http://mcp.sim/"
# Virtual time a simulated server takes to start (a connect), and to answer a call.
MCP_START_S: Final = 0.05
MCP_CALL_S: Final = 0.01
# The simulated servers' tools, in name order (as the simulated model takes them).
MCP_TOOL_SUFFIXES: Final = ("add", "check", "lookup")
# What the failures say (inside Kelpie's "Error executing MCP tool <name>: ...").
CRASH_MARK: Final = "crashed or disconnected during the call"
TIMEOUT_MARK: Final = "did not answer the call"
SLOW_START_MARK: Final = "did not answer within"
MCP_FAULT_MARKS: Final = {
    "mcp_crash": CRASH_MARK,
    "mcp_timeout": TIMEOUT_MARK,
    "mcp_slow_start": SLOW_START_MARK,
}


def sim_mcp_config(prefix: str, *, remote: bool = False) -> dict[str, Any]:
    """The `config` of a create body that names the simulated server `prefix`."""
    if remote:
        return {"mcp_server_type": "streamable_http", "server_url": SIM_MCP_URL_PREFIX + prefix}
    return {"mcp_server_type": "stdio", "command": SIM_MCP_COMMAND, "args": [prefix]}


def server_prefix(spec: McpServerSpec) -> str | None:
    """The simulated server a spec names, or None (no such command or URL)."""
    if spec.transport == "stdio":
        if spec.command == SIM_MCP_COMMAND and len(spec.args) == 1 and spec.args[0]:
            return spec.args[0]
        return None
    url = spec.url or ""
    if url.startswith(SIM_MCP_URL_PREFIX) and url.removeprefix(SIM_MCP_URL_PREFIX):
        return url.removeprefix(SIM_MCP_URL_PREFIX)
    return None


def mcp_tool_names(prefix: str) -> list[str]:
    return [f"{prefix}_{suffix}" for suffix in MCP_TOOL_SUFFIXES]


def _schema(**properties: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in properties.items()},
        "required": sorted(properties),
    }


def mcp_tools(prefix: str) -> list[McpTool]:
    schemas = {
        "add": ("Adds two integers.", _schema(a="integer", b="integer")),
        "check": ("Checks that a number is even.", _schema(n="integer")),
        "lookup": ("Looks a key up.", _schema(key="string")),
    }
    return [
        McpTool(
            name=f"{prefix}_{suffix}",
            description=schemas[suffix][0],
            input_schema=schemas[suffix][1],
        )
        for suffix in MCP_TOOL_SUFFIXES
    ]


def mcp_call_arguments(suffix: str, token: str, index: int) -> dict[str, Any]:
    """The arguments the workload (and the simulated model) give a tool for a turn's
    index-th MCP call (or a direct run) named by `token`."""
    if suffix == "add":
        return {"a": index, "b": len(token)}
    if suffix == "check":
        return {"n": index + len(token)}
    return {"key": f"{token}k{index}"}


def mcp_result(suffix: str, arguments: Mapping[str, Any]) -> McpCallResult:
    """What a simulated server's tool answers: a function of its arguments."""
    try:
        if suffix == "add":
            return McpCallResult(text=str(int(arguments["a"]) + int(arguments["b"])))
        if suffix == "check":
            n = int(arguments["n"])
            if n % 2:
                return McpCallResult(text=f"check failed: {n} is odd", is_error=True)
            return McpCallResult(text=f"{n} is even")
        if suffix == "lookup":
            return McpCallResult(text=f"value-of-{arguments['key']}")
    except (KeyError, TypeError, ValueError) as error:
        return McpCallResult(text=f"invalid arguments: {error}", is_error=True)
    return McpCallResult(text=f"unknown tool '{suffix}'", is_error=True)


class McpFaultInjector:
    """Draws, per call, whether the server crashes or the call stalls, and per connect how
    slowly the server starts. One for the whole run: its stream continues across restarts."""

    def __init__(self, plan: FaultPlan, entropy: Entropy) -> None:
        self.plan = plan
        self._entropy = entropy
        self.injected: list[str] = []

    def _record(self, kind: str) -> None:
        self.injected.append(kind)
        record_fault(kind)

    def draw_call(self) -> str | None:
        for kind in MCP_CALL_FAULTS:
            probability = getattr(self.plan, kind)
            if probability and self._entropy.random() < probability:
                self._record(kind)
                return kind
        return None

    def draw_start_s(self, timeout_s: float) -> float:
        """How long the next connect takes (a slow start may run past `timeout_s`)."""
        if self.plan.mcp_slow_start and self._entropy.random() < self.plan.mcp_slow_start:
            self._record("mcp_slow_start")
            return MCP_START_S + self._entropy.random() * MCP_SLOW_START_TIMEOUTS_MAX * timeout_s
        return MCP_START_S


def record_fault(kind: str) -> None:
    """Records a fault against the request being served (if any)."""
    faults = current_request.get()
    if faults is not None:
        faults.kinds.append(kind)


@dataclasses.dataclass(eq=False)
class SimConnection:
    spec: McpServerSpec
    prefix: str
    alive: bool = True


class SimMcp:
    def __init__(
        self,
        clock: Clock,
        faults: McpFaultInjector,
        *,
        connect_timeout_s: float = MCP_CONNECT_TIMEOUT_S,
    ) -> None:
        self._clock = clock
        self._faults = faults
        self._connect_timeout_s = connect_timeout_s
        self._connections: dict[str, SimConnection] = {}
        self._connecting: dict[str, asyncio.Future[SimConnection]] = {}
        self.closed = False
        # Per server key: connections made, connections lost (a crash, a forget), calls.
        self.connects: collections.Counter[str] = collections.Counter()
        self.losses: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.running = 0

    def describe(self) -> str:
        keys = sorted(set(self.connects) | set(self.calls))
        return ", ".join(
            f"{key}: connects={self.connects[key]} losses={self.losses[key]}"
            f" calls={self.calls[key]}"
            for key in keys
        )

    def connections_not_reused(self) -> list[str]:
        """Server keys with more connects than losses + 1 (should be none)."""
        return [key for key in sorted(self.connects) if self.connects[key] > self.losses[key] + 1]

    # The McpClients protocol ------------------------------------------------------------

    async def list_tools(self, server: McpServerSpec) -> list[McpTool]:
        connection = await self._connection(server)
        await self._clock.sleep(MCP_CALL_S)
        return mcp_tools(connection.prefix)

    async def call_tool(
        self,
        server: McpServerSpec,
        tool_name: str,
        arguments: Mapping[str, Any],
        *,
        timeout_s: float = MCP_CALL_TIMEOUT_S_DEFAULT,
    ) -> McpCallResult:
        assert timeout_s > 0, timeout_s
        connection = await self._connection(server)
        self.calls[server.key] += 1
        self.running += 1
        try:
            fault = self._faults.draw_call()
            if fault == "mcp_timeout":
                await self._clock.sleep(timeout_s)
                raise McpUnavailable(
                    f"MCP server '{server.name}' {TIMEOUT_MARK} to tool '{tool_name}' within"
                    f" {timeout_s:g} s."
                )
            await self._clock.sleep(MCP_CALL_S)
            if fault == "mcp_crash":
                self._server_died(connection)
            elif not connection.alive:
                # Another call's crash (or a forget) ended the connection under this one.
                record_fault("mcp_crash")
            if not connection.alive:
                raise McpUnavailable(
                    f"MCP server '{server.name}' {CRASH_MARK} to tool '{tool_name}'; the call"
                    " was not retried, as it may have had effects."
                )
            prefix = f"{connection.prefix}_"
            if not tool_name.startswith(prefix):
                return McpCallResult(text=f"unknown tool '{tool_name}'", is_error=True)
            return mcp_result(tool_name.removeprefix(prefix), arguments)
        finally:
            self.running -= 1
            self._after_call(connection)

    async def forget(self, key: str) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            self._lose(connection)

    async def close(self) -> None:
        self.closed = True
        for key in sorted(self._connections):
            await self.forget(key)

    # The connection ----------------------------------------------------------------------

    def _lose(self, connection: SimConnection) -> None:
        if connection.alive:
            connection.alive = False
            self.losses[connection.spec.key] += 1
        if self._connections.get(connection.spec.key) is connection:
            del self._connections[connection.spec.key]

    def _server_died(self, connection: SimConnection) -> None:
        """The server crashed mid-call: its connection is lost (the next call reconnects)."""
        self._lose(connection)

    def _after_call(self, connection: SimConnection) -> None:
        """A call is over (the connection is kept)."""

    async def _connection(self, spec: McpServerSpec) -> SimConnection:
        if self.closed:
            raise McpUnavailable(f"MCP server '{spec.name}' was closed (Kelpie is stopping).")
        prefix = server_prefix(spec)
        if prefix is None:
            what = spec.command if spec.transport == "stdio" else spec.url
            raise McpUnavailable(
                f"MCP server '{spec.name}' could not start: the command '{what}' was not"
                " found on its PATH."
                if spec.transport == "stdio"
                else f"MCP server '{spec.name}' is unreachable at {what}."
            )
        while True:
            kept = self._connections.get(spec.key)
            if kept is not None and kept.alive and kept.spec == spec:
                return kept
            if kept is not None:
                self._lose(kept)  # the spec changed: the old server is closed
            pending = self._connecting.get(spec.key)
            if pending is None:
                return await self._connect_shared(spec, prefix)
            # Concurrent first uses share one connect, and its failure (which, past the
            # name check, only a slow start explains: recorded for this request too).
            try:
                return await asyncio.shield(pending)
            except McpUnavailable:
                record_fault("mcp_slow_start")
                raise
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise
                # The connecting request was cancelled: connect anew.

    async def _connect_shared(self, spec: McpServerSpec, prefix: str) -> SimConnection:
        future: asyncio.Future[SimConnection] = asyncio.get_running_loop().create_future()
        self._connecting[spec.key] = future
        try:
            connection = await self._connect(spec, prefix)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: a connect nobody else awaited is not unhandled
            raise
        finally:
            if self._connecting.get(spec.key) is future:
                del self._connecting[spec.key]
        future.set_result(connection)
        return connection

    async def _connect(self, spec: McpServerSpec, prefix: str) -> SimConnection:
        start_s = self._faults.draw_start_s(self._connect_timeout_s)
        if start_s > self._connect_timeout_s:
            await self._clock.sleep(self._connect_timeout_s)
            raise McpUnavailable(
                f"MCP server '{spec.name}' {SLOW_START_MARK} {self._connect_timeout_s:g} s"
                " while connecting."
            )
        await self._clock.sleep(start_s)
        if self.closed:
            raise McpUnavailable(f"MCP server '{spec.name}' was closed while connecting.")
        connection = SimConnection(spec=spec, prefix=prefix)
        self._connections[spec.key] = connection
        self.connects[spec.key] += 1
        return connection

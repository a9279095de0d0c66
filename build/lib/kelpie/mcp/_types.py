"""The MCP effect: what the server needs from MCP servers (list a server's tools, call one),
behind a protocol so the simulator can bring servers that crash, stall and start slowly.

A server is named by its `McpServerSpec`; the client keeps one connection per spec (made
lazily, reused, reconnected after a failure) and forgets it when told the spec changed."""

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal, Protocol

McpTransport = Literal["stdio", "sse", "streamable_http"]
MCP_TRANSPORTS: Final[tuple[McpTransport, ...]] = ("stdio", "sse", "streamable_http")

# Letta's timeouts, kept: connecting (a stdio server's start-up included), listing tools.
MCP_CONNECT_TIMEOUT_S: Final = 30.0
MCP_LIST_TIMEOUT_S: Final = 30.0
MCP_CALL_TIMEOUT_S_DEFAULT: Final = 60.0
# A tool's result as text, at most (more is cut, and says so).
MCP_RESULT_CHARS_MAX: Final = 1_000_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class McpServerSpec:
    """How to reach one MCP server. `key` identifies the connection: a spec with the same key
    but other fields is a changed server (the old connection is closed)."""

    key: str  # the server record's id
    name: str
    transport: McpTransport
    # stdio: the command, its arguments and its environment. Of Kelpie's own environment
    # (which holds LLM keys) only PATH, when `env` lacks it, and the SDK's harmless HOME,
    # LOGNAME, SHELL, TERM and USER pass.
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # stdio, for the launcher that confines the server (ignored when none does): whether it
    # may use the network, and the host paths it may read, or read and write.
    network: bool = False
    read_only_paths: tuple[str, ...] = ()
    read_write_paths: tuple[str, ...] = ()
    # sse / streamable_http
    url: str | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.transport in MCP_TRANSPORTS, self.transport
        if self.transport == "stdio":
            assert self.command, "a stdio server needs a command"
        else:
            assert self.url, "a remote server needs a url"


@dataclasses.dataclass(frozen=True, kw_only=True)
class McpTool:
    name: str
    description: str | None
    input_schema: Mapping[str, Any]  # JSON Schema of the arguments (an object)


@dataclasses.dataclass(frozen=True, kw_only=True)
class McpCallResult:
    """`text` is the result's content as text (text parts joined by newlines; other parts
    described); `is_error` is the server's own error flag for the call."""

    text: str
    is_error: bool = False
    structured: Mapping[str, Any] | None = None


class McpUnavailable(Exception):
    """The server could not be reached, started, or answer in time; the message says which,
    in one sentence a user can act on (it becomes a 4xx detail or an error tool return)."""


class StdioRefused(Exception):
    """A launcher will not start this stdio server (it cannot be confined here); the message
    says why, in words a user can act on."""


async def _nothing_to_release() -> None:
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class StdioLaunch:
    """What to spawn for a stdio server: `command` and `args` with `env` (the SDK adds its
    harmless HOME, LOGNAME, SHELL, TERM and USER where `env` lacks them). `release` is
    awaited once the process has ended (or been killed)."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    release: Callable[[], Awaitable[None]] = _nothing_to_release


class StdioLauncher(Protocol):
    """Turns a stdio server's command into what is actually spawned (in production: the
    same command confined by the sandbox)."""

    async def launch(
        self, server: McpServerSpec, command: str, env: Mapping[str, str]
    ) -> StdioLaunch:
        """`command` is the spec's command resolved to an absolute path and `env` the
        server's whole environment. Raises StdioRefused when the server cannot start."""
        ...


class McpClients(Protocol):
    async def list_tools(self, server: McpServerSpec) -> list[McpTool]:
        """The server's tools (connecting first if need be). Raises McpUnavailable."""
        ...

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
        ...

    async def forget(self, key: str) -> None:
        """Closes the connection kept for `key` (the server was changed or deleted)."""
        ...

    async def close(self) -> None: ...

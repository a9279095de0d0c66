"""MCP: the servers' tools Kelpie lists and calls, behind the `McpClients` protocol.

`McpConnections` is the production client over the official `mcp` SDK (stdio, SSE and
streamable HTTP): one kept connection per server, reconnected with back-off, pinged when
quiet, closed when the server is changed or deleted. The simulator brings its own
`McpClients`. stdio servers start through a `StdioLauncher` when one is given (the CLI
gives the sandbox's, which confines them). This package imports nothing else of Kelpie."""

from kelpie.mcp._connections import McpConnections
from kelpie.mcp._types import (
    MCP_CALL_TIMEOUT_S_DEFAULT,
    MCP_CONNECT_TIMEOUT_S,
    MCP_LIST_TIMEOUT_S,
    MCP_RESULT_CHARS_MAX,
    MCP_TRANSPORTS,
    McpCallResult,
    McpClients,
    McpServerSpec,
    McpTool,
    McpTransport,
    McpUnavailable,
    StdioLaunch,
    StdioLauncher,
    StdioRefused,
)

__all__ = [
    "MCP_CALL_TIMEOUT_S_DEFAULT",
    "MCP_CONNECT_TIMEOUT_S",
    "MCP_LIST_TIMEOUT_S",
    "MCP_RESULT_CHARS_MAX",
    "MCP_TRANSPORTS",
    "McpCallResult",
    "McpClients",
    "McpConnections",
    "McpServerSpec",
    "McpTool",
    "McpTransport",
    "McpUnavailable",
    "StdioLaunch",
    "StdioLauncher",
    "StdioRefused",
]

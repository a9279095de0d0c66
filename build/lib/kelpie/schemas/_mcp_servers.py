"""MCP servers as Letta shapes them: a create body `{server_name, config}` whose config is
one of stdio, SSE or streamable HTTP (by `mcp_server_type`), and a flat record in answers
(`{id, server_name, mcp_server_type, command, args, env}` or `{..., server_url,
auth_header, auth_token, custom_headers}`)."""

import datetime as dt
from typing import Annotated, Any, Final, Literal

from pydantic import Field, HttpUrl, field_validator

from kelpie.schemas._base import RequestModel, ResponseModel

MCP_SERVER_NAME_CHARS_MAX: Final = 100
MCP_ARGS_MAX: Final = 256
MCP_SANDBOX_PATHS_MAX: Final = 64
MCP_SANDBOX_PATH_CHARS_MAX: Final = 4096
MCP_TOOL_TAG_PREFIX: Final = "mcp:"
# Where an MCP tool's Tool record says which server it comes from (a Kelpie key, in the
# shape Letta's tool metadata uses for MCP).
MCP_METADATA_KEY: Final = "mcp"

McpServerType = Literal["stdio", "sse", "streamable_http"]
_NAME_PATTERN: Final = r"^[A-Za-z0-9_.-]+$"


def _url_text(value: str) -> str:
    HttpUrl(value)  # raises a ValidationError saying what is wrong
    return value


def _absolute_paths(paths: list[str]) -> list[str]:
    for path in paths:
        if not path.startswith("/") or "\0" in path or len(path) > MCP_SANDBOX_PATH_CHARS_MAX:
            raise ValueError(f"'{path[:200]}' is not an absolute path")
    return paths


class StdioSandbox(RequestModel):
    """How a stdio server's sandbox opens up (Kelpie's, not in Letta's shapes): the network
    (off by default), and host paths it may read, or read and write. The paths must lie in
    a directory the operator lists in KELPIE_MCP_STDIO_PATHS; inside the sandbox they have
    the same names as on the host."""

    network: bool = False
    read_only_paths: list[str] = Field(default_factory=list, max_length=MCP_SANDBOX_PATHS_MAX)
    read_write_paths: list[str] = Field(default_factory=list, max_length=MCP_SANDBOX_PATHS_MAX)

    @field_validator("read_only_paths", "read_write_paths")
    @classmethod
    def _are_absolute(cls, value: list[str]) -> list[str]:
        return _absolute_paths(value)


class StdioConfig(RequestModel):
    mcp_server_type: Literal["stdio"] = "stdio"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list, max_length=MCP_ARGS_MAX)
    env: dict[str, str] | None = None
    sandbox: StdioSandbox | None = None


class RemoteConfig(RequestModel):
    server_url: str = Field(min_length=1)
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, str] | None = None

    @field_validator("server_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _url_text(value)


class SseConfig(RemoteConfig):
    mcp_server_type: Literal["sse"] = "sse"


class StreamableHttpConfig(RemoteConfig):
    mcp_server_type: Literal["streamable_http"] = "streamable_http"


McpServerConfig = Annotated[
    StdioConfig | SseConfig | StreamableHttpConfig, Field(discriminator="mcp_server_type")
]


class McpServerCreate(RequestModel):
    server_name: str = Field(
        min_length=1, max_length=MCP_SERVER_NAME_CHARS_MAX, pattern=_NAME_PATTERN
    )
    config: McpServerConfig


class StdioConfigUpdate(RequestModel):
    mcp_server_type: Literal["stdio"] = "stdio"
    command: str | None = Field(default=None, min_length=1)
    args: list[str] | None = Field(default=None, max_length=MCP_ARGS_MAX)
    env: dict[str, str] | None = None
    sandbox: StdioSandbox | None = None  # replaces the server's whole sandbox setting


class RemoteConfigUpdate(RequestModel):
    server_url: str | None = None
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, str] | None = None

    @field_validator("server_url")
    @classmethod
    def _is_http_url(cls, value: str | None) -> str | None:
        return None if value is None else _url_text(value)


class SseConfigUpdate(RemoteConfigUpdate):
    mcp_server_type: Literal["sse"] = "sse"


class StreamableHttpConfigUpdate(RemoteConfigUpdate):
    mcp_server_type: Literal["streamable_http"] = "streamable_http"


McpServerConfigUpdate = Annotated[
    StdioConfigUpdate | SseConfigUpdate | StreamableHttpConfigUpdate,
    Field(discriminator="mcp_server_type"),
]


class McpServerUpdate(RequestModel):
    server_name: str | None = Field(
        default=None, min_length=1, max_length=MCP_SERVER_NAME_CHARS_MAX, pattern=_NAME_PATTERN
    )
    config: McpServerConfigUpdate | None = None


class McpServer(ResponseModel):
    """The stored and answered record: Letta's flat shape, every transport's fields."""

    id: str
    server_name: str
    mcp_server_type: McpServerType
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    sandbox: StdioSandbox | None = None
    server_url: str | None = None
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, str] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def letta_shape(self) -> dict[str, Any]:
        """The fields of this server's transport only (what Letta answers), and Kelpie's
        `sandbox` setting of a stdio server that has one."""
        common = {"id": self.id, "server_name": self.server_name}
        if self.mcp_server_type == "stdio":
            shape = {
                **common,
                "mcp_server_type": "stdio",
                "command": self.command,
                "args": self.args or [],
                "env": self.env,
            }
            if self.sandbox is not None:
                shape["sandbox"] = self.sandbox.model_dump()
            return shape
        return {
            **common,
            "mcp_server_type": self.mcp_server_type,
            "server_url": self.server_url,
            "auth_header": self.auth_header,
            "auth_token": self.auth_token,
            "custom_headers": self.custom_headers,
        }


class McpToolRunRequest(RequestModel):
    args: dict[str, Any] = Field(default_factory=dict)


class DeclaredStdioServer(RequestModel):
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list, max_length=MCP_ARGS_MAX)
    env: dict[str, str] | None = None
    sandbox: StdioSandbox | None = None


class DeclaredRemoteServer(RequestModel):
    url: str = Field(min_length=1)
    # Claude Desktop's files say "http" for streamable HTTP.
    type: Literal["sse", "streamable_http", "http"] = "streamable_http"
    headers: dict[str, str] | None = None

    @field_validator("url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        return _url_text(value)


class McpServersFile(RequestModel):
    """MCP servers declared in a file read at start-up, in the shape MCP clients use
    (Claude Desktop, Cursor): `{"mcpServers": {"<name>": {"command": ..., "args": [...],
    "env": {...}} | {"url": ..., "type": "sse" | "streamable_http", "headers": {...}}}}`.
    A stdio server may also carry Kelpie's `"sandbox": {...}` (see StdioSandbox)."""

    mcpServers: dict[
        Annotated[str, Field(max_length=MCP_SERVER_NAME_CHARS_MAX, pattern=_NAME_PATTERN)],
        DeclaredStdioServer | DeclaredRemoteServer,
    ]

    def requests(self) -> list[McpServerCreate]:
        """One create request per declared server, in name order."""
        requests = []
        for name, declared in sorted(self.mcpServers.items()):
            config: StdioConfig | SseConfig | StreamableHttpConfig
            if isinstance(declared, DeclaredStdioServer):
                config = StdioConfig(
                    command=declared.command,
                    args=declared.args,
                    env=declared.env,
                    sandbox=declared.sandbox,
                )
            elif declared.type == "sse":
                config = SseConfig(server_url=declared.url, custom_headers=declared.headers)
            else:
                config = StreamableHttpConfig(
                    server_url=declared.url, custom_headers=declared.headers
                )
            requests.append(McpServerCreate(server_name=name, config=config))
        return requests

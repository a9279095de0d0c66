"""Server configuration: one immutable object, built from the process environment and
command-line flags by the CLI (or by hand in tests and the simulator)."""

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, final

from kelpie.obs import LOG_FORMATS, LogFormat

HOST_DEFAULT: Final = "127.0.0.1"
PORT_DEFAULT: Final = 8283
DATA_DIR_DEFAULT: Final = "~/.kelpie"
DB_FILE_NAME: Final = "kelpie.db"
# Mirrors of kelpie.sandbox's defaults (env sits below it and cannot import it).
TOOL_TIMEOUT_S_DEFAULT: Final = 60.0
SANDBOX_POOL_SIZE_DEFAULT: Final = 4
WORKSPACE_QUOTA_MIB_DEFAULT: Final = 256
CODE_SESSION_IDLE_S_DEFAULT: Final = 120.0


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    host: str = HOST_DEFAULT
    port: int = PORT_DEFAULT
    data_dir: Path = dataclasses.field(default_factory=lambda: Path(DATA_DIR_DEFAULT).expanduser())
    # `sqlite:///path`; defaults to a file in data_dir.
    db_url: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    # Model handle used when an agent is created without `model` or `llm_config`.
    default_model: str | None = None
    # Context window assumed for models whose window the catalogue does not know.
    context_window_default: int = 128_000
    # When set, every request except health must carry it (Letta's password mode).
    server_password: str | None = None
    # Virtual actors: how many agents stay activated, and after how long idle they go.
    active_agents_max: int = 10_000
    idle_timeout_s: float = 300.0
    # Embedding model handle for archival and recall search: `kelpie/all-minilm-l6-v2` (the
    # local default, no network) or `openai/<model>` on OPENAI_BASE_URL (or the base URL
    # below); the dimension is needed for models the catalogue does not know.
    embedding_model: str | None = None
    embedding_dim: int | None = None
    embedding_base_url: str | None = None
    # Custom tools: the wall-clock limit of a call without its own (metadata_.sandbox),
    # and how many locked-down sandbox workers wait, pre-started, for a call.
    tool_timeout_s: float = TOOL_TIMEOUT_S_DEFAULT
    sandbox_pool_size: int = SANDBOX_POOL_SIZE_DEFAULT
    # Each agent's workspace (the working directory of its code and custom tools).
    workspace_quota_mib: int = WORKSPACE_QUOTA_MIB_DEFAULT
    # Code sessions (gVisor) keep an agent's Python state between runs; paused when idle.
    code_sessions: bool = True
    code_session_idle_s: float = CODE_SESSION_IDLE_S_DEFAULT
    # MCP servers declared in a file (MCP clients' `mcpServers` JSON), registered at start.
    mcp_servers_file: Path | None = None
    # stdio MCP servers run confined by the sandbox (network off unless a server opts in);
    # this runs them unconfined instead, as the server's own user (root, if it is root).
    mcp_stdio_unconfined: bool = False
    # Host directories inside which a stdio server may be granted paths (its config's
    # `sandbox.read_only_paths` / `read_write_paths`); none by default.
    mcp_stdio_paths: tuple[Path, ...] = ()
    # web_search's service: a SearXNG instance's base URL (wins when both are set), or Exa.
    web_search_url: str | None = None
    exa_api_key: str | None = None
    # fetch_webpage may reach loopback, private and link-local addresses (refused by default:
    # the model picks the URL, and they hold the server's own and its network's services).
    web_allow_private: bool = False
    # Abuse limits: a request's headers must arrive within header_timeout_s of the
    # connection (or of its first byte, on a kept-alive one), each piece of its body within
    # body_timeout_s; at most connections_max connections (and requests) at once, beyond
    # which requests are answered 503; in password mode, an address that fails
    # authentication auth_failures_max times is refused (429) until its allowance refills
    # (auth_failures_max per auth_failure_window_s).
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    connections_max: int = 1_000
    auth_failures_max: int = 10
    auth_failure_window_s: float = 60.0
    # Observability: `/metrics` and the metrics behind it (off: neither), and the log
    # lines' format (`text`, or `json`: one object a line).
    metrics: bool = True
    log_format: LogFormat = "text"

    @property
    def database_url(self) -> str:
        if self.db_url is not None:
            return self.db_url
        return f"sqlite:///{self.data_dir / DB_FILE_NAME}"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **overrides: object) -> "Config":
        """Reads the documented environment variables; explicit overrides win."""

        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        values: dict[str, object] = {
            "host": get("KELPIE_HOST") or HOST_DEFAULT,
            "port": int(get("KELPIE_PORT") or PORT_DEFAULT),
            "data_dir": Path(get("KELPIE_DATA_DIR") or DATA_DIR_DEFAULT).expanduser(),
            "db_url": get("KELPIE_DB_URL"),
            "openai_api_key": get("OPENAI_API_KEY"),
            "openai_base_url": get("OPENAI_BASE_URL"),
            "anthropic_api_key": get("ANTHROPIC_API_KEY"),
            "anthropic_base_url": get("ANTHROPIC_BASE_URL"),
            "default_model": get("KELPIE_DEFAULT_MODEL"),
            "server_password": get("KELPIE_SERVER_PASSWORD") or get("LETTA_SERVER_PASSWORD"),
            "embedding_model": get("KELPIE_EMBEDDING_MODEL"),
            "embedding_base_url": get("KELPIE_EMBEDDING_BASE_URL"),
            "web_search_url": get("KELPIE_WEB_SEARCH_URL"),
            "exa_api_key": get("EXA_API_KEY"),
        }
        if (window := get("KELPIE_CONTEXT_WINDOW_DEFAULT")) is not None:
            values["context_window_default"] = int(window)
        if (active := get("KELPIE_ACTIVE_AGENTS_MAX")) is not None:
            values["active_agents_max"] = int(active)
        if (idle := get("KELPIE_IDLE_TIMEOUT_S")) is not None:
            values["idle_timeout_s"] = float(idle)
        if (timeout := get("KELPIE_TOOL_TIMEOUT_S")) is not None:
            values["tool_timeout_s"] = float(timeout)
        if (pool := get("KELPIE_SANDBOX_POOL_SIZE")) is not None:
            values["sandbox_pool_size"] = int(pool)
        if (sessions := get("KELPIE_CODE_SESSIONS")) is not None:
            values["code_sessions"] = flag("KELPIE_CODE_SESSIONS", sessions)
        if (idle_s := get("KELPIE_CODE_SESSION_IDLE_S")) is not None:
            values["code_session_idle_s"] = float(idle_s)
        if (quota := get("KELPIE_WORKSPACE_QUOTA_MIB")) is not None:
            values["workspace_quota_mib"] = int(quota)
        if (servers := get("KELPIE_MCP_SERVERS_FILE")) is not None:
            values["mcp_servers_file"] = Path(servers).expanduser()
        if (unconfined := get("KELPIE_MCP_STDIO_UNCONFINED")) is not None:
            values["mcp_stdio_unconfined"] = flag("KELPIE_MCP_STDIO_UNCONFINED", unconfined)
        if (paths := get("KELPIE_MCP_STDIO_PATHS")) is not None:
            values["mcp_stdio_paths"] = tuple(
                Path(part).expanduser() for part in paths.split(os.pathsep) if part.strip()
            )
        if (dim := get("KELPIE_EMBEDDING_DIM")) is not None:
            values["embedding_dim"] = int(dim)
        if (allow := get("KELPIE_WEB_ALLOW_PRIVATE")) is not None:
            values["web_allow_private"] = flag("KELPIE_WEB_ALLOW_PRIVATE", allow)
        for name, field, kind in _LIMITS:
            if (limit := get(name)) is not None:
                values[field] = _positive(name, kind(limit))
        if (metrics := get("KELPIE_METRICS")) is not None:
            values["metrics"] = flag("KELPIE_METRICS", metrics)
        if (log_format := get("KELPIE_LOG_FORMAT")) is not None:
            if log_format.lower() not in LOG_FORMATS:
                choices = " or ".join(LOG_FORMATS)
                raise ValueError(f"KELPIE_LOG_FORMAT must be {choices}, not '{log_format}'")
            values["log_format"] = log_format.lower()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]  # keys are the dataclass fields above


# The abuse limits' variables, their fields and types (each must be positive).
_LIMITS: Final[tuple[tuple[str, str, type[int] | type[float]], ...]] = (
    ("KELPIE_HEADER_TIMEOUT_S", "header_timeout_s", float),
    ("KELPIE_BODY_TIMEOUT_S", "body_timeout_s", float),
    ("KELPIE_CONNECTIONS_MAX", "connections_max", int),
    ("KELPIE_AUTH_FAILURES_MAX", "auth_failures_max", int),
    ("KELPIE_AUTH_FAILURE_WINDOW_S", "auth_failure_window_s", float),
)


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value}")
    return value


TRUE_FLAGS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_FLAGS: Final = frozenset({"0", "false", "no", "off"})


def flag(name: str, value: str) -> bool:
    """A boolean variable; a value that is neither is an error, not a silent `false`."""
    if value.lower() in TRUE_FLAGS:
        return True
    if value.lower() in FALSE_FLAGS:
        return False
    raise ValueError(f"{name} must be 1/true/yes/on or 0/false/no/off, not '{value}'")

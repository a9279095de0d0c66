"""Server configuration: one immutable object, built by the CLI from command-line flags,
the process environment and a TOML config file, in that order of precedence, over the
defaults (or by hand in tests and the simulator). `SETTINGS` is the one table of how each
field is read from the environment and from a file."""

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal, final

from kelpie.obs import LOG_FORMATS, LogFormat

# uvicorn's log levels, least verbose first.
LOG_LEVELS: Final = ("critical", "error", "warning", "info", "debug", "trace")
HOST_DEFAULT: Final = "127.0.0.1"
PORT_DEFAULT: Final = 8283
DATA_DIR_DEFAULT: Final = "~/.kelpie"
DB_FILE_NAME: Final = "kelpie.db"
# Mirrors of kelpie.sandbox's defaults (env sits below it and cannot import it).
TOOL_TIMEOUT_S_DEFAULT: Final = 60.0
SANDBOX_POOL_SIZE_DEFAULT: Final = 4
WORKSPACE_QUOTA_MIB_DEFAULT: Final = 256
CODE_SESSION_IDLE_S_DEFAULT: Final = 120.0
# OpenTelemetry's standard variables naming where traces go (either turns tracing on).
OTLP_ENDPOINT_VARIABLES: Final = (
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


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
    # The interpreter tier (Monty) runs snippets that need only their tools, where code
    # sessions are off.
    code_interpreter: bool = True
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
    # How much is logged: uvicorn's levels (`warning` silences the request log).
    log_level: str = "info"
    # Traces over OTLP/HTTP (the `kelpie[otel]` extra): on, off, or None: on when
    # OpenTelemetry's own OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (see `tracing_on`).
    otel: bool | None = None

    def tracing_on(self, environ: Mapping[str, str]) -> bool:
        """Whether to export traces: KELPIE_OTEL (or `otel` in a config file) if set, else
        whether an OTLP endpoint is configured the standard way (the exporter reads it)."""
        if self.otel is not None:
            return self.otel
        return any(environ.get(name, "").strip() for name in OTLP_ENDPOINT_VARIABLES)

    @property
    def database_url(self) -> str:
        if self.db_url is not None:
            return self.db_url
        return f"sqlite:///{self.data_dir / DB_FILE_NAME}"

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], *, config_file: Path | None = None, **overrides: object
    ) -> "Config":
        """Every setting from its sources, the first that sets it winning: `overrides`
        (command-line flags; None means unset), the environment, the TOML `config_file`,
        then the defaults. A value that is wrong raises ConfigError naming where it was."""
        values: dict[str, object] = {}
        if config_file is not None:
            values.update(read_config_file(config_file))
        for setting in SETTINGS:
            for name in setting.env:
                text = environ.get(name, "").strip()
                if text:
                    values[setting.field] = setting.from_text(name, text)
                    break
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]  # keys are checked against SETTINGS


class ConfigError(ValueError):
    """A setting's value (or a config file's key) is wrong; the message names it."""


SettingKind = Literal["str", "int", "float", "bool", "path", "paths", "choice"]


@final
@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its Config field (also its key in a config file), the environment
    variables that set it (the first one set wins) and how a value is read."""

    field: str
    env: tuple[str, ...]
    kind: SettingKind
    positive: bool = False
    choices: tuple[str, ...] = ()

    def from_text(self, name: str, text: str) -> object:
        """The value of environment variable `name`."""
        match self.kind:
            case "str":
                return text
            case "int" | "float":
                try:
                    number: float = int(text) if self.kind == "int" else float(text)
                except ValueError:
                    kind = "an integer" if self.kind == "int" else "a number"
                    raise ConfigError(f"{name} must be {kind}, not '{text}'") from None
                return self._checked(name, number)
            case "bool":
                return flag(name, text)
            case "path":
                return Path(text).expanduser()
            case "paths":
                return tuple(Path(p).expanduser() for p in text.split(os.pathsep) if p.strip())
            case "choice":
                return self._choice(name, text)

    def from_toml(self, where: str, value: object, base_dir: Path) -> object:
        """The value of this setting's key in a config file (`where` names it); relative
        paths are relative to the file's directory."""
        wrong = None
        match self.kind:
            case "str" | "choice" | "path":
                if not isinstance(value, str):
                    wrong = "a string"
                elif self.kind == "choice":
                    return self._choice(where, value)
                elif self.kind == "path":
                    return base_dir / Path(value).expanduser()
                else:
                    return value
            case "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    wrong = "an integer"
                else:
                    return self._checked(where, value)
            case "float":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    wrong = "a number"
                else:
                    return self._checked(where, float(value))
            case "bool":
                if not isinstance(value, bool):
                    wrong = "true or false"
                else:
                    return value
            case "paths":
                if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                    wrong = "a list of strings"
                else:
                    return tuple(base_dir / Path(p).expanduser() for p in value)
        raise ConfigError(f"{where} must be {wrong}, not {value!r} ({type(value).__name__})")

    def _checked(self, where: str, number: float) -> float:
        if self.positive and not number > 0:
            raise ConfigError(f"{where} must be positive, not {number}")
        return number

    def _choice(self, where: str, text: str) -> str:
        if text.lower() not in self.choices:
            raise ConfigError(f"{where} must be {' or '.join(self.choices)}, not '{text}'")
        return text.lower()


# Every setting, in Config's order: what reads the environment and config files. A Config
# field missing here is an error at import (below), so no setting can forget either source.
SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("host", ("KELPIE_HOST",), "str"),
    Setting("port", ("KELPIE_PORT",), "int"),
    Setting("data_dir", ("KELPIE_DATA_DIR",), "path"),
    Setting("db_url", ("KELPIE_DB_URL",), "str"),
    Setting("openai_api_key", ("OPENAI_API_KEY",), "str"),
    Setting("openai_base_url", ("OPENAI_BASE_URL",), "str"),
    Setting("anthropic_api_key", ("ANTHROPIC_API_KEY",), "str"),
    Setting("anthropic_base_url", ("ANTHROPIC_BASE_URL",), "str"),
    Setting("default_model", ("KELPIE_DEFAULT_MODEL",), "str"),
    Setting("context_window_default", ("KELPIE_CONTEXT_WINDOW_DEFAULT",), "int"),
    Setting("server_password", ("KELPIE_SERVER_PASSWORD", "LETTA_SERVER_PASSWORD"), "str"),
    Setting("active_agents_max", ("KELPIE_ACTIVE_AGENTS_MAX",), "int"),
    Setting("idle_timeout_s", ("KELPIE_IDLE_TIMEOUT_S",), "float"),
    Setting("embedding_model", ("KELPIE_EMBEDDING_MODEL",), "str"),
    Setting("embedding_dim", ("KELPIE_EMBEDDING_DIM",), "int"),
    Setting("embedding_base_url", ("KELPIE_EMBEDDING_BASE_URL",), "str"),
    Setting("tool_timeout_s", ("KELPIE_TOOL_TIMEOUT_S",), "float"),
    Setting("sandbox_pool_size", ("KELPIE_SANDBOX_POOL_SIZE",), "int"),
    Setting("workspace_quota_mib", ("KELPIE_WORKSPACE_QUOTA_MIB",), "int"),
    Setting("code_sessions", ("KELPIE_CODE_SESSIONS",), "bool"),
    Setting("code_session_idle_s", ("KELPIE_CODE_SESSION_IDLE_S",), "float"),
    Setting("code_interpreter", ("KELPIE_CODE_INTERPRETER",), "bool"),
    Setting("mcp_servers_file", ("KELPIE_MCP_SERVERS_FILE",), "path"),
    Setting("mcp_stdio_unconfined", ("KELPIE_MCP_STDIO_UNCONFINED",), "bool"),
    Setting("mcp_stdio_paths", ("KELPIE_MCP_STDIO_PATHS",), "paths"),
    Setting("web_search_url", ("KELPIE_WEB_SEARCH_URL",), "str"),
    Setting("exa_api_key", ("EXA_API_KEY",), "str"),
    Setting("web_allow_private", ("KELPIE_WEB_ALLOW_PRIVATE",), "bool"),
    Setting("header_timeout_s", ("KELPIE_HEADER_TIMEOUT_S",), "float", positive=True),
    Setting("body_timeout_s", ("KELPIE_BODY_TIMEOUT_S",), "float", positive=True),
    Setting("connections_max", ("KELPIE_CONNECTIONS_MAX",), "int", positive=True),
    Setting("auth_failures_max", ("KELPIE_AUTH_FAILURES_MAX",), "int", positive=True),
    Setting("auth_failure_window_s", ("KELPIE_AUTH_FAILURE_WINDOW_S",), "float", positive=True),
    Setting("metrics", ("KELPIE_METRICS",), "bool"),
    Setting("log_format", ("KELPIE_LOG_FORMAT",), "choice", choices=LOG_FORMATS),
    Setting("log_level", ("KELPIE_LOG_LEVEL",), "choice", choices=LOG_LEVELS),
    Setting("otel", ("KELPIE_OTEL",), "bool"),
)
_BY_FIELD: Final = {setting.field: setting for setting in SETTINGS}
if [field.name for field in dataclasses.fields(Config)] != list(_BY_FIELD):
    raise RuntimeError("kelpie.env.SETTINGS must list every Config field, in Config's order")


def read_config_file(path: Path) -> dict[str, object]:
    """The settings a TOML config file sets: top-level keys named as Config's fields
    (`port = 8283`, `openai_api_key = "..."`). An unknown key, a value of the wrong type or
    a file that cannot be read or parsed raises ConfigError naming it. An empty string
    leaves its setting unset, as an empty environment variable does."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"config file {path}: cannot be read: {error.strerror}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path}: not valid TOML: {error}") from error
    values: dict[str, object] = {}
    base_dir = path.parent.absolute()
    for key, value in data.items():
        setting = _BY_FIELD.get(key)
        if setting is None:
            close = difflib.get_close_matches(key, _BY_FIELD, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"config file {path}: unknown key '{key}'{hint}")
        if value == "":
            continue
        values[key] = setting.from_toml(f"config file {path}: '{key}'", value, base_dir)
    return values


TRUE_FLAGS: Final = frozenset({"1", "true", "yes", "on"})
FALSE_FLAGS: Final = frozenset({"0", "false", "no", "off"})


def flag(name: str, value: str) -> bool:
    """A boolean variable; a value that is neither is an error, not a silent `false`."""
    if value.lower() in TRUE_FLAGS:
        return True
    if value.lower() in FALSE_FLAGS:
        return False
    raise ConfigError(f"{name} must be 1/true/yes/on or 0/false/no/off, not '{value}'")

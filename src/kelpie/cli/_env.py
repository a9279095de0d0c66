"""Builds the production Env: the system clock and entropy, the configured store, model
catalogue, embedder and web."""

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from kelpie import __version__
from kelpie.cli._mcp_stdio import UNCONFINED_VARIABLE, ConfinedStdioLauncher
from kelpie.env import Config, Env, SystemClock, system_entropy
from kelpie.llm import LlmRouter, ProviderCatalog
from kelpie.mcp import McpConnections
from kelpie.memory import (
    HASHING_MODEL,
    LOCAL_MODEL,
    OPENAI_EMBEDDING_DIMS,
    Embedder,
    HashingEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
)
from kelpie.obs import Metrics, Tracing
from kelpie.sandbox import MIB, ProcessSandbox, ProgramSandbox
from kelpie.storage import SqliteStore, StorageUnavailable, Store
from kelpie.web import HttpWeb

SQLITE_URL_PREFIX = "sqlite:///"
POSTGRES_URL_PREFIXES = ("postgresql://", "postgres://")
OPENAI_HANDLE_PREFIX = "openai/"
# Under the data dir: requirement environments of custom tools, sandbox scratch.
SANDBOX_DIR_NAME = "sandbox"
# Under the sandbox dir: what the launch of a confined MCP stdio server opens (root only).
PROGRAMS_DIR_NAME = "programs"

log = logging.getLogger("kelpie")


def open_store(config: Config, *, serving: bool = True) -> Store:
    """The configured database: SQLite (`sqlite:///path`, the default) or PostgreSQL
    (`postgresql://...`, with the `postgres` extra), migrated to head. One that cannot be
    used ends start-up with a sentence saying why. `serving`: the server's own store (it
    checkpoints SQLite's WAL from a thread), not a command's."""
    url = config.database_url
    if url.startswith(SQLITE_URL_PREFIX):
        return SqliteStore.open(
            Path(url.removeprefix(SQLITE_URL_PREFIX)), background_checkpoints=serving
        )
    if url.startswith(POSTGRES_URL_PREFIXES):
        return _open_postgres(url)
    raise SystemExit(
        f"Unsupported database URL '{url}': use {SQLITE_URL_PREFIX}/path/to/kelpie.db"
        " (SQLite, the default) or postgresql://user:password@host/database"
    )


def _open_postgres(url: str) -> Store:
    try:
        from kelpie.storage._postgres import PostgresStore
    except ImportError as error:
        raise SystemExit(
            "A postgresql:// database needs the PostgreSQL driver: install"
            f" `kelpie[postgres]` (pip install 'kelpie[postgres]') ({error})"
        ) from error
    try:
        return PostgresStore.connect(url)
    except StorageUnavailable as error:
        raise SystemExit(f"The database cannot be used: {error.detail}") from error


def open_embedder(config: Config) -> Embedder:
    """The embedder KELPIE_EMBEDDING_MODEL names; the local model by default."""
    handle = config.embedding_model or LOCAL_MODEL
    if handle == LOCAL_MODEL:
        if (missing := LocalEmbedder.missing_piece()) is not None:
            raise SystemExit(
                f"The local embedding model ({LOCAL_MODEL}) cannot run: {missing}; or set"
                f" KELPIE_EMBEDDING_MODEL to {OPENAI_HANDLE_PREFIX}<model>"
            )
        return LocalEmbedder()
    if handle == HASHING_MODEL:
        return HashingEmbedder()
    if handle.startswith(OPENAI_HANDLE_PREFIX):
        name = handle.removeprefix(OPENAI_HANDLE_PREFIX)
        dim = config.embedding_dim or OPENAI_EMBEDDING_DIMS.get(name)
        if dim is None:
            raise SystemExit(
                f"KELPIE_EMBEDDING_DIM is required for embedding model '{handle}'"
                " (the number of dimensions its vectors have)"
            )
        return OpenAIEmbedder(
            model_name=name,
            dim=dim,
            base_url=config.embedding_base_url or config.openai_base_url,
            api_key=config.openai_api_key,
        )
    raise SystemExit(
        f"Unknown embedding model '{handle}': use {LOCAL_MODEL} (local, the default),"
        f" {OPENAI_HANDLE_PREFIX}<model> (OpenAI or an OpenAI-compatible server) or"
        f" {HASHING_MODEL} (deterministic, for tests)"
    )


def open_mcp(config: Config, sandbox: ProcessSandbox) -> McpConnections:
    """The MCP client; its stdio servers run confined by the sandbox unless the operator
    opted out."""
    if config.mcp_stdio_unconfined:
        log.warning("%s is set: stdio MCP servers run unconfined", UNCONFINED_VARIABLE)
        return McpConnections()
    programs = ProgramSandbox(
        sandbox,
        state_dir=config.data_dir / SANDBOX_DIR_NAME / PROGRAMS_DIR_NAME,
        protected=[config.data_dir],
    )
    launcher = ConfinedStdioLauncher(programs, allowed_paths=config.mcp_stdio_paths)
    return McpConnections(stdio_launcher=launcher)


def open_tracing(config: Config, environ: Mapping[str, str]) -> Tracing:
    """Tracing over OTLP/HTTP when configured, else off. Asked for without the `otel`
    extra installed, start-up stops with what to install."""
    if not config.tracing_on(environ):
        return Tracing()
    try:
        tracing = Tracing.otlp(service_version=__version__)
    except ImportError as error:
        raise SystemExit(str(error)) from error
    log.info("tracing on: spans exported over OTLP/HTTP")
    return tracing


def open_env(config: Config, environ: Mapping[str, str] | None = None) -> Env:
    """The production Env; `environ` (default: the process's) says whether to trace."""
    tracing = open_tracing(config, os.environ if environ is None else environ)
    clock = SystemClock()
    entropy = system_entropy()
    sandbox = ProcessSandbox(
        root_dir=config.data_dir / SANDBOX_DIR_NAME,
        pool_size=config.sandbox_pool_size,
        workspace_bytes_max=config.workspace_quota_mib * MIB,
        code_sessions=config.code_sessions,
        code_interpreter=config.code_interpreter,
        session_idle_s=config.code_session_idle_s,
    )
    return Env(
        clock=clock,
        entropy=entropy,
        config=config,
        store=open_store(config),
        models=ProviderCatalog(config, clock),
        llm=LlmRouter(config, clock, entropy.fork("llm")),
        embedder=open_embedder(config),
        sandbox=sandbox,
        mcp=open_mcp(config, sandbox),
        web=HttpWeb(
            allow_private=config.web_allow_private,
            searxng_url=config.web_search_url,
            exa_api_key=config.exa_api_key,
        ),
        metrics=Metrics(enabled=config.metrics),
        tracing=tracing,
    )

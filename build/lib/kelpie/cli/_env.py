"""Builds the production Env: the system clock and entropy, the configured store, model
catalogue and embedder."""

from pathlib import Path

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
from kelpie.sandbox import ProcessSandbox
from kelpie.storage import SqliteStore, Store

SQLITE_URL_PREFIX = "sqlite:///"
OPENAI_HANDLE_PREFIX = "openai/"
# Under the data dir: requirement environments of custom tools, sandbox scratch.
SANDBOX_DIR_NAME = "sandbox"


def open_store(config: Config) -> Store:
    url = config.database_url
    if url.startswith(SQLITE_URL_PREFIX):
        return SqliteStore.open(
            Path(url.removeprefix(SQLITE_URL_PREFIX)), background_checkpoints=True
        )
    raise SystemExit(
        f"Unsupported database URL '{url}': this version stores data in SQLite"
        f" ({SQLITE_URL_PREFIX}/path/to/kelpie.db); PostgreSQL support is planned"
    )


def open_embedder(config: Config) -> Embedder:
    """The embedder KELPIE_EMBEDDING_MODEL names; the local model by default."""
    handle = config.embedding_model or LOCAL_MODEL
    if handle == LOCAL_MODEL:
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


def open_env(config: Config) -> Env:
    clock = SystemClock()
    entropy = system_entropy()
    return Env(
        clock=clock,
        entropy=entropy,
        config=config,
        store=open_store(config),
        models=ProviderCatalog(config, clock),
        llm=LlmRouter(config, clock, entropy.fork("llm")),
        embedder=open_embedder(config),
        sandbox=ProcessSandbox(
            root_dir=config.data_dir / SANDBOX_DIR_NAME, pool_size=config.sandbox_pool_size
        ),
        mcp=McpConnections(),
    )

"""Builds the production Env: the system clock and entropy, the configured store and
model catalogue."""

from pathlib import Path

from kelpie.env import Config, Env, SystemClock, system_entropy
from kelpie.llm import LlmRouter, ProviderCatalog
from kelpie.storage import SqliteStore, Store

SQLITE_URL_PREFIX = "sqlite:///"


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
    )

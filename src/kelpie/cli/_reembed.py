"""`kelpie reembed`: after the embedding model changed, makes a vector with the configured
model for every passage and message that has none or one by another model. Safe to stop
and run again: it picks up where it left off. Best run while the server is stopped."""

import asyncio
from pathlib import Path

import click

from kelpie.cli._config import config_option, load_config
from kelpie.cli._env import open_embedder, open_store
from kelpie.env import Config, SystemClock
from kelpie.memory import LocalEmbedder, MemorySearch
from kelpie.storage import SEARCH_KINDS


async def _reembed(config: Config) -> None:
    store = open_store(config, serving=False)
    embedder = open_embedder(config)
    try:
        search = MemorySearch(store, embedder, SystemClock())
        for kind in SEARCH_KINDS:
            done = await search.reembed(kind)
            embedded, total = await store.count_embeddings(kind, embedder.model)
            click.echo(f"{kind}s: {done} embedded now; {embedded} of {total} by {embedder.model}")
    finally:
        if isinstance(embedder, LocalEmbedder):
            embedder.close()
        await store.close()


@click.command()
@config_option
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where data lives (env KELPIE_DATA_DIR; default ~/.kelpie).",
)
@click.option("--db", "db_url", default=None, help="Database URL (env KELPIE_DB_URL).")
@click.option(
    "--model",
    "embedding_model",
    default=None,
    help="Embedding model handle (env KELPIE_EMBEDDING_MODEL; default kelpie/all-minilm-l6-v2).",
)
def reembed(
    config_file: Path | None, data_dir: Path | None, db_url: str | None, embedding_model: str | None
) -> None:
    """Re-embed stored passages and messages with the configured embedding model."""
    config = load_config(
        config_file, data_dir=data_dir, db_url=db_url, embedding_model=embedding_model
    )
    asyncio.run(_reembed(config))

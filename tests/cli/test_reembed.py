"""`kelpie reembed`: vectors made by another model are replaced with the configured one's."""

import asyncio
import datetime as dt
from pathlib import Path

from click.testing import CliRunner

from kelpie.cli import main
from kelpie.env import SystemClock
from kelpie.memory import HASHING_MODEL, HashingEmbedder, MemorySearch
from kelpie.schemas import Archive, Passage
from kelpie.storage import SqliteStore

ARCHIVE = "archive-00000000-0000-4000-8000-000000000001"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


async def _seed(path: Path) -> None:
    store = SqliteStore.open(path)
    await store.insert_archive(Archive(id=ARCHIVE, name="a", created_at=T0))
    await store.insert_passages(
        [
            Passage(id=f"passage-{n}", text=f"note {n}", archive_id=ARCHIVE, created_at=T0)
            for n in range(3)
        ]
    )
    await MemorySearch(store, HashingEmbedder(dim=32), SystemClock()).embed_pending(
        "passage", (), 10
    )
    await store.close()


def test_reembed_replaces_vectors_of_another_model(tmp_path: Path) -> None:
    db = tmp_path / "kelpie.db"
    asyncio.run(_seed(db))

    result = CliRunner().invoke(
        main, ["reembed", "--data-dir", str(tmp_path), "--model", HASHING_MODEL]
    )

    assert result.exit_code == 0, result.output
    assert f"passages: 3 embedded now; 3 of 3 by {HASHING_MODEL}" in result.output
    store = SqliteStore.open(db)
    assert asyncio.run(store.count_embeddings("passage", HASHING_MODEL)) == (3, 3)
    asyncio.run(store.close())

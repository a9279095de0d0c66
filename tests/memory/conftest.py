"""A store and a search over it, in process, for the memory tests."""

import asyncio
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from kelpie.env import SystemClock
from kelpie.memory import HashingEmbedder, LocalEmbedder, MemorySearch
from kelpie.schemas import Archive, Passage
from kelpie.storage import SqliteStore

ARCHIVE: Final = "archive-00000000-0000-4000-8000-000000000001"
OTHER_ARCHIVE: Final = "archive-00000000-0000-4000-8000-000000000002"
T0: Final = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(tmp_path / "kelpie.db")
    for archive_id in (ARCHIVE, OTHER_ARCHIVE):
        asyncio.run(opened.insert_archive(Archive(id=archive_id, name=archive_id, created_at=T0)))
    try:
        yield opened
    finally:
        asyncio.run(opened.close())


@pytest.fixture
def search(store: SqliteStore) -> MemorySearch:
    return MemorySearch(store, HashingEmbedder(), SystemClock())


@pytest.fixture(scope="session")
def local_embedder() -> Iterator[LocalEmbedder]:
    """The real model, loaded once per test process."""
    embedder = LocalEmbedder()
    try:
        yield embedder
    finally:
        embedder.close()


def passage(
    number: int,
    text: str,
    *,
    archive_id: str = ARCHIVE,
    tags: tuple[str, ...] = (),
    days: int = 0,
) -> Passage:
    return Passage(
        id=f"passage-00000000-0000-4000-8000-{number:012d}",
        text=text,
        archive_id=archive_id,
        tags=list(tags),
        created_at=T0 + dt.timedelta(days=days),
    )

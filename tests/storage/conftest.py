"""Fixtures of the storage tests: a fresh SqliteStore on a real file, and seeded ids."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kelpie.env import Entropy
from kelpie.storage import SqliteStore

from ._support import SEED


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "kelpie.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(db_path)
    try:
        yield opened
    finally:
        asyncio.run(opened.close())


@pytest.fixture
def entropy() -> Entropy:
    return Entropy(SEED).fork("storage-test")

"""Fixtures of the storage tests: a fresh SqliteStore on a real file, and seeded ids."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from kelpie.env import Entropy
from kelpie.storage import SqliteStore
from kelpie.storage._pgserver import LocalPostgres

from ._backends import BACKENDS, Backend, migrated_database, open_backend
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


# Backends of the conformance suite (test_conformance_*.py) -------------------------------


@pytest.fixture(scope="session")
def pg_database(postgres: LocalPostgres) -> str:
    """A database migrated to head once per session (per xdist worker); its DSN. Each
    PostgreSQL test of the conformance suite starts by emptying it."""
    return migrated_database(postgres)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty store of each kind in turn (a new SQLite file; the emptied PostgreSQL
    test database)."""
    with open_backend(request, str(request.param), tmp_path) as opened:
        yield opened

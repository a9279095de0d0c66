"""The backends the conformance suite runs its assertions against: each test gets a fresh,
empty store of every kind. A store's pool belongs to one event loop, so a test hands the
backend one coroutine (`Backend.run`) that opens the store, uses it, and closes it.

Each role of the Store has its `test_conformance_<role>.py`, written against `backend`.
"""

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import psycopg
import pytest

from kelpie.storage import SqliteStore, Store, _pg_migrations
from kelpie.storage._pgserver import LocalPostgres
from kelpie.storage._postgres import PostgresStore

BACKENDS: Final = ("sqlite", "postgres")
TEST_DATABASE: Final = "kelpie_test"


# Every role of the Store is on every backend: the suite checks the whole protocol.
Conformance = Store


T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Backend:
    kind: str
    opener: Callable[[], Awaitable[Conformance]]

    def run(self, scenario: Callable[[Conformance], Coroutine[Any, Any, T]]) -> T:
        """Runs `scenario` on a freshly opened store (same data as the last run), in one
        event loop, and closes the store after it."""

        async def main() -> T:
            store = await self.opener()
            try:
                return await scenario(store)
            finally:
                await store.close()

        return asyncio.run(main())


def migrated_database(postgres: LocalPostgres) -> str:
    """The worker's test database, migrated to head; its DSN."""
    dsn = postgres.create_database(TEST_DATABASE)
    _pg_migrations.apply(dsn)
    return dsn


def empty_database(dsn: str) -> None:
    """Deletes every row a test may have left (yoyo's bookkeeping stays) and resets the
    search counters: a few milliseconds, where a fresh copy of a migrated database takes
    most of a second."""
    with psycopg.connect(dsn, autocommit=True) as db, db.transaction():
        rows = db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND tablename NOT LIKE '%yoyo%' ORDER BY tablename"
        ).fetchall()
        # Foreign keys are not checked while replicating, so the order does not matter.
        db.execute("SET LOCAL session_replication_role = replica")
        for (table,) in rows:
            db.execute(f'DELETE FROM "{table}"')
        db.execute(
            "INSERT INTO search_counters (name, value) VALUES ('passage', 0), ('message', 0)"
        )


@contextlib.contextmanager
def open_backend(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Iterator[Backend]:
    if kind == "sqlite":
        path = tmp_path / "data" / "kelpie.db"

        async def open_sqlite() -> Conformance:
            return SqliteStore.open(path)

        yield Backend(kind, open_sqlite)
        return
    assert kind == "postgres", f"unknown backend {kind}"
    dsn: str = request.getfixturevalue("pg_database")
    empty_database(dsn)

    async def open_postgres() -> Conformance:
        return await PostgresStore.open(dsn, pool_max=4)

    yield Backend(kind, open_postgres)

"""PostgreSQL connections that die (the server restarted, a proxy cut them, an operator ran
`pg_terminate_backend`): the operation that finds its connection dead fails with
StorageUnavailable (a 503 with a detail in a request), a write in flight is rolled back
whole, and the pool replaces the dead connections, so the store serves again without a
restart of Kelpie."""

import asyncio
from typing import Final

import psycopg
import pytest

from kelpie.env import Entropy
from kelpie.storage import NewAgent, StorageUnavailable
from kelpie.storage._postgres import PostgresStore

from ._backends import empty_database
from ._support import agent_config

POOL_SIZE: Final = 2
# Operations after a cut until every dead pooled connection has been found and replaced.
RECOVERY_TRIES_MAX: Final = POOL_SIZE + 1


def _cut_connections(dsn: str) -> int:
    """Terminates every other session on the database; how many."""
    with psycopg.connect(dsn, autocommit=True) as db:
        row = db.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_cut_connections_fail_one_operation_each_then_the_pool_recovers(
    pg_database: str, entropy: Entropy
) -> None:
    empty_database(pg_database)
    agent = agent_config(entropy, "ada")

    async def scenario() -> tuple[int, int]:
        store = await PostgresStore.open(pg_database, pool_min=POOL_SIZE, pool_max=POOL_SIZE)
        try:
            await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=())
            assert _cut_connections(pg_database) >= 1
            failures: list[str] = []
            for _ in range(RECOVERY_TRIES_MAX + POOL_SIZE):
                try:
                    found = await store.get_agent(agent.id)
                except StorageUnavailable as error:
                    failures.append(error.detail)
                    continue
                assert found is not None
                assert found.name == "ada"
            assert all("database read failed" in detail for detail in failures), failures
            return len(failures), await store.count_agents()
        finally:
            await store.close()

    failures, agents = asyncio.run(scenario())
    assert 1 <= failures <= POOL_SIZE
    assert agents == 1


def test_a_write_whose_connection_dies_midway_leaves_nothing(
    pg_database: str, entropy: Entropy
) -> None:
    empty_database(pg_database)
    agent = agent_config(entropy, "bob")

    async def scenario() -> int:
        store = await PostgresStore.open(pg_database, pool_min=1, pool_max=1)

        async def doomed_write() -> None:
            async with store._tx() as db:
                await store._insert_agent_rows(db, NewAgent(agent=agent))
                _cut_connections(pg_database)  # before the commit
                await db.execute("SELECT 1")

        try:
            with pytest.raises(StorageUnavailable):
                await doomed_write()
            return await store.count_agents()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == 0

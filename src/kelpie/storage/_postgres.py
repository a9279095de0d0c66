"""PostgreSQL store: the server tier (issue 12). One shared pool per process, one
transaction per write, the schema of `migrations/postgres/` applied at open.

The driver is psycopg 3 with psycopg_pool, not asyncpg:
- one driver for everything: yoyo migrates PostgreSQL through psycopg 3, so the schema
  and the store use the same connection code and DSNs (asyncpg would add psycopg anyway);
- pipeline mode (several statements per round trip: a step's inserts, `executemany`) and
  COPY in both directions (what `migrate-db` needs for 100,000 passages);
- server-side binding with a prepared-statement cache that can be turned off
  (`prepare_threshold=None`) for PgBouncer in transaction mode, where asyncpg's always-on
  cache needs a workaround;
- psycopg_pool: a maintained async pool with sizing, reconnection after a lost server,
  and a bounded wait that becomes a 503, not a stall;
- what the field runs: SQLAlchemy, Django and most new Python services default to psycopg 3;
  asyncpg (which Letta used) is a little faster per query in benchmarks, but our requests
  are a handful of indexed statements, where the round trips dominate either way.

The `Store` is one mixin per role of `_roles`: AgentsAndBlocks (agents, blocks and their
history, tools, tags, in-context ids), MessagesAndRuns (messages, runs, steps and the step
commit), Conversations (conversations and the event log of background runs), Archives
(archives, their attachments and passages), Search (tsvector and pgvector), McpServers,
WorkingMemory and ApiKeys.
"""

from typing import Final, final

import psycopg_pool

from kelpie.storage import _pg_migrations
from kelpie.storage._errors import StorageUnavailable
from kelpie.storage._pg_agents import AgentRows
from kelpie.storage._pg_archives import ArchiveRows
from kelpie.storage._pg_keys import ApiKeyRows
from kelpie.storage._pg_mcp import McpRows
from kelpie.storage._pg_memory import WorkingMemoryRows
from kelpie.storage._pg_rows import Connection
from kelpie.storage._pg_runs import RunRows
from kelpie.storage._pg_search import SearchRows
from kelpie.storage._pg_threads import ThreadRows
from kelpie.storage._vector_index import VectorIndex

POOL_SIZE_MIN_DEFAULT: Final = 1
POOL_SIZE_MAX_DEFAULT: Final = 10
# How long a request waits for a pooled connection before it fails with a 503.
POOL_WAIT_S: Final = 10.0


@final
class PostgresStore(
    AgentRows,
    RunRows,
    ThreadRows,
    ArchiveRows,
    SearchRows,
    McpRows,
    WorkingMemoryRows,
    ApiKeyRows,
):
    def __init__(
        self,
        pool: psycopg_pool.AsyncConnectionPool[Connection],
        *,
        pgvector: bool,
        iterative_scans: bool = False,
    ) -> None:
        super().__init__(pool)
        # Whether the schema has pgvector columns (see migration 0003); search uses them.
        self.pgvector = pgvector
        self.iterative_scans = iterative_scans
        self._vector_index = VectorIndex(self)
        self._hnsw_indexed = set()

    @classmethod
    def connect(
        cls,
        dsn: str,
        *,
        pool_min: int = POOL_SIZE_MIN_DEFAULT,
        pool_max: int = POOL_SIZE_MAX_DEFAULT,
    ) -> "PostgresStore":
        """Migrates the database at `dsn` (a postgresql:// URL) and makes the pool, which
        opens on first use in the event loop that uses it. An unreachable, too old or too
        new database raises StorageUnavailable saying which."""
        assert _pg_migrations.is_postgres_dsn(dsn), "not a postgresql:// URL"
        assert 1 <= pool_min <= pool_max, "pool sizes out of order"
        # Start-up only: migrations and the extension check block (as SQLite's do).
        _pg_migrations.apply(dsn)
        pgvector = _pg_migrations.has_pgvector(dsn)
        iterative = pgvector and _pg_migrations.iterative_scans(dsn)
        pool: psycopg_pool.AsyncConnectionPool[Connection] = psycopg_pool.AsyncConnectionPool(
            dsn,
            min_size=pool_min,
            max_size=pool_max,
            timeout=POOL_WAIT_S,
            kwargs={"autocommit": True},
            open=False,
            name="kelpie",
        )
        return cls(pool, pgvector=pgvector, iterative_scans=iterative)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        pool_min: int = POOL_SIZE_MIN_DEFAULT,
        pool_max: int = POOL_SIZE_MAX_DEFAULT,
    ) -> "PostgresStore":
        """`connect`, then open the pool now (StorageUnavailable if it cannot)."""
        store = cls.connect(dsn, pool_min=pool_min, pool_max=pool_max)
        try:
            await store._open_pool()
        except StorageUnavailable:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

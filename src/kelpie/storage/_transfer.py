"""`kelpie migrate-db`: every row of a SQLite store copied into a PostgreSQL database,
resumable, then proven equal (issue 12).

In order: the source is checked (a Kelpie SQLite database at this version, every table
known to `_transfer_schema`) and the target too (reachable, and new, or holding this same
migration unfinished), all before anything is written; the target is migrated to head;
each table is copied in foreign-key order, in key order, by binary COPY in batches, each
batch committed with the bookkeeping of how far it got (`_transfer_target`); pgvector's
`embedding` is written by the copy itself, from each row's float32 `vector` (one write per
row, where an UPDATE afterwards would write every indexed row twice); then identity
sequences move past the copied keys, the HNSW indexes are made for the dimensions present
(the store's own `_ensure_hnsw`), and the copy is verified (`_transfer_verify`). The
bookkeeping goes once the copy is verified.
"""

import dataclasses
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Protocol, final

import psycopg

from kelpie.storage import _pg_migrations
from kelpie.storage._errors import StorageUnavailable
from kelpie.storage._postgres import PostgresStore
from kelpie.storage._search import SearchKind
from kelpie.storage._search_sql import INDEX_TABLES
from kelpie.storage._transfer_rows import (
    BATCH_BYTES_MAX,
    BATCH_ROWS_DEFAULT,
    batches,
    open_source,
    snapshot,
    source_rows,
    with_embedding,
)
from kelpie.storage._transfer_schema import (
    TablePlan,
    TransferRefused,
    plan,
    source_tables,
    sqlite_sequences,
    unknown_source_tables,
)
from kelpie.storage._transfer_target import (
    Connection,
    TableProgress,
    check_target,
    copy_batch,
    drop_progress,
    mark_done,
    read_progress,
    read_schema,
    reset_identities,
    start_progress,
    take_lock,
)
from kelpie.storage._transfer_verify import Outcome, TableCheck, verify

__all__ = [
    "BATCH_ROWS_DEFAULT",
    "Outcome",
    "Progress",
    "QuietProgress",
    "TableCheck",
    "TableCopied",
    "TransferRefused",
    "migrate",
]

CONNECT_TIMEOUT_S: Final = 10
# maintenance_work_mem of the HNSW builds: pgvector builds fastest with the whole graph in
# memory (about 1 KiB per 384-dimension halfvec); past it, it goes on, slower, on disk.
HNSW_BUILD_MEMORY_MIB: Final = 512


@final
@dataclasses.dataclass(frozen=True)
class TableCopied:
    """One table done in this run: rows copied now, and rows a run before had copied."""

    table: str
    rows: int
    earlier_rows: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


class Progress(Protocol):
    """What a migration reports as it goes. The command prints it; a test may raise from
    `batch_copied` to stop the copy there (the batch is committed by then)."""

    def phase(self, text: str) -> None: ...
    def batch_copied(self, table: str, rows: int) -> None: ...
    def table_copied(self, copied: TableCopied) -> None: ...


class QuietProgress:
    def phase(self, text: str) -> None:
        pass

    def batch_copied(self, table: str, rows: int) -> None:
        pass

    def table_copied(self, copied: TableCopied) -> None:
        pass


async def _connect(dsn: str) -> Connection:
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
        )
    except psycopg.Error as error:
        raise TransferRefused(f"cannot reach {_pg_migrations.redacted(dsn)}: {error}") from error


def _check_reachable(dsn: str) -> None:
    """Reachable, new enough, and not written by a newer Kelpie (reads only)."""
    try:
        _pg_migrations.check(dsn)
    except StorageUnavailable as error:
        raise TransferRefused(error.detail) from error


async def _copy_table(
    source: sqlite3.Connection,
    db: Connection,
    table: TablePlan,
    state: TableProgress,
    *,
    batch_rows: int,
    progress: Progress,
) -> None:
    """The table's rows past those a run before copied, batch by batch."""
    earlier = state.rows
    started = time.perf_counter()
    read = source_rows(source, table, state.last_key)
    try:
        rows = (with_embedding(table, row) for row in read)
        for batch in batches(rows, batch_rows=batch_rows, batch_bytes=BATCH_BYTES_MAX):
            state = await copy_batch(db, table, batch, state)
            progress.batch_copied(table.name, state.rows)
    finally:
        read.close()  # its SQLite cursor, now: the run may be stopping
    await mark_done(db, table.name)
    seconds = time.perf_counter() - started
    progress.table_copied(TableCopied(table.name, state.rows - earlier, earlier, seconds))


async def _index_vectors(
    dsn: str, db: Connection, plans: Sequence[TablePlan], progress: Progress
) -> None:
    """An HNSW index per (kind, dimension) the copied embeddings have, made by the store's
    own `_ensure_hnsw` (so the index is the one the store searches by, and would make)."""
    kinds: dict[str, SearchKind] = {table.name: kind for kind, table in INDEX_TABLES.items()}
    wanted: list[tuple[SearchKind, int]] = []
    for table in plans:
        if table.embedding_oid is None:
            continue
        assert table.name in kinds, f"{table.name} has embeddings but is no search index"
        cursor = await db.execute(
            f'SELECT DISTINCT dim FROM "{table.name}" WHERE embedding IS NOT NULL ORDER BY dim'
        )
        wanted += [(kinds[table.name], int(row[0])) for row in await cursor.fetchall()]
    if not wanted:
        return
    # One pooled connection: the session setting below holds for every build.
    store = PostgresStore.connect(dsn, pool_min=1, pool_max=1)
    try:
        async with store._reading() as session:
            await session.execute(f"SET maintenance_work_mem = '{HNSW_BUILD_MEMORY_MIB}MB'")
        for kind, dim in wanted:
            progress.phase(f"indexing {kind} vectors of {dim} dimensions (HNSW)")
            await store._ensure_hnsw(kind, dim)
    finally:
        await store.close()


async def migrate(
    source_path: Path,
    dsn: str,
    *,
    batch_rows: int = BATCH_ROWS_DEFAULT,
    progress: Progress | None = None,
) -> Outcome:
    """Copies the SQLite store at `source_path` into the PostgreSQL database at `dsn`
    (new, or holding this migration unfinished) and verifies the copy. TransferRefused
    (nothing written) when either side cannot be used as asked; StorageUnavailable when
    the copy stops half-way (run it again to continue)."""
    assert _pg_migrations.is_postgres_dsn(dsn), "the target is a postgresql:// URL"
    assert batch_rows >= 1, "a batch holds at least one row"
    report = progress or QuietProgress()
    source = open_source(source_path)
    try:
        return await _migrate(source, source_path, dsn, batch_rows=batch_rows, report=report)
    except (psycopg.Error, sqlite3.Error) as error:
        raise StorageUnavailable(f"{type(error).__name__}: {error}") from error
    finally:
        source.close()


async def _migrate(
    source: sqlite3.Connection, source_path: Path, dsn: str, *, batch_rows: int, report: Progress
) -> Outcome:
    unknown = unknown_source_tables(source_tables(source))
    if unknown:
        raise TransferRefused(
            f"{source_path} has tables migrate-db does not know ({', '.join(unknown)})"
        )
    source_id = str(source_path.resolve())  # noqa: ASYNC240 - a CLI's one-off, no loop to stall
    _check_reachable(dsn)
    async with await _connect(dsn) as db:
        await take_lock(db)
        resuming = await check_target(db, source_id)
        report.phase(
            f"{'resuming' if resuming else 'starting'} the migration of {source_path}"
            f" to {_pg_migrations.redacted(dsn)}"
        )
        _pg_migrations.apply(dsn)
        plans = plan(source, await read_schema(db))
        await start_progress(db, source_id, [table.name for table in plans])
        # Each batch commits with its progress, so a commit lost in a crash of the
        # server loses both: the run after copies that batch again. No fsync wait.
        await db.execute("SET synchronous_commit = off")
        done = await read_progress(db)
        with snapshot(source):
            for table in plans:
                state = done[table.name]
                if state.done:
                    report.table_copied(TableCopied(table.name, 0, state.rows, 0.0))
                    continue
                await _copy_table(source, db, table, state, batch_rows=batch_rows, progress=report)
        await db.execute("SET synchronous_commit = on")
        await reset_identities(db, plans, sqlite_sequences(source))
        report.phase("analyzing the copied tables")
        await db.execute(f"ANALYZE {', '.join(f'{chr(34)}{t.name}{chr(34)}' for t in plans)}")
        await _index_vectors(dsn, db, plans, report)
        report.phase("verifying: row counts and sha256 of every table on both sides")
        outcome = await verify(source, db, plans)
        if outcome.verified:
            await drop_progress(db)
        return outcome

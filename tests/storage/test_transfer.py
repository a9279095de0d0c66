"""`migrate-db`'s copy (`kelpie.storage._transfer`), SQLite into the tests' PostgreSQL:

- Every table is copied into a new database (migrated by the copy): it reads back through
  the Store API as the source does (agents, blocks and history, tools, tags, messages and
  in-context ids, runs, steps, events, conversations, archives, passages, working memory,
  MCP servers, API keys), keyword and vector search find the same rows, counts and
  checksums are verified, and the bookkeeping is gone.
- pgvector: every vector has its halfvec embedding, equal to the store's own conversion,
  under an HNSW index; identity sequences continue past the largest key SQLite ever gave.
- Stopped after a few batches, the same migration run again continues where it stopped,
  and ends verified (a row copied twice would break a primary key); another source cannot
  take over the unfinished target.
- Refusals, before anything is written: a table the mover does not know, a target that
  already holds data.
- Verification sees a row that differs.

The migrated database is shared by the tests that only read it (each migration of a new
database costs about a second, most of it the schema's migrations).
"""

import asyncio
import itertools
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import numpy as np
import psycopg
import pytest

from kelpie.env import Entropy
from kelpie.schemas import AgentState, Block, Message, Passage, us_from_datetime
from kelpie.storage import MessageQuery, SearchFilter, SqliteStore, message_search_text
from kelpie.storage._pg_rows import searchable
from kelpie.storage._pg_search import halfvec_text
from kelpie.storage._pgserver import LocalPostgres
from kelpie.storage._postgres import PostgresStore
from kelpie.storage._transfer import Outcome, TableCopied, TransferRefused, migrate
from kelpie.storage._transfer_rows import open_source
from kelpie.storage._transfer_schema import PROGRESS_TABLE, plan
from kelpie.storage._transfer_target import read_schema
from kelpie.storage._transfer_verify import verify

from ._support import SEED
from ._transfer_source import (
    ALL,
    COSINE_TOLERANCE,
    MODEL,
    Source,
    build_source,
    read_back,
    unit_vector,
)

INTERRUPT_AFTER_BATCHES: Final = 7
SMALL_BATCH_ROWS: Final = 2
_DATABASES: Final = itertools.count()


class Stop(Exception):
    """Raised by a progress hook to stop a migration part-way."""


class Recorded:
    """Progress kept for assertions; raises Stop after `stop_after` batches if given."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.batches = 0
        self.tables: list[TableCopied] = []

    def phase(self, text: str) -> None:
        pass

    def batch_copied(self, table: str, rows: int) -> None:
        self.batches += 1
        if self.stop_after is not None and self.batches >= self.stop_after:
            raise Stop(f"stopped after {self.batches} batches, in {table}")

    def table_copied(self, copied: TableCopied) -> None:
        self.tables.append(copied)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    path = tmp_path_factory.mktemp("transfer") / "kelpie.db"
    return asyncio.run(build_source(path, Entropy(SEED).fork("transfer")))


@pytest.fixture(scope="module")
def new_database(postgres: LocalPostgres) -> Iterator[Callable[[], str]]:
    """Makes new databases without a table; their DSNs. Dropped at the module's end."""
    made: list[str] = []

    def make() -> str:
        made.append(f"kelpie_transfer_{next(_DATABASES)}")
        postgres.drop_database(made[-1])
        return postgres.create_database(made[-1])

    yield make
    for name in made:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def migrated(source: Source, new_database: Callable[[], str]) -> tuple[str, Outcome]:
    """The source migrated into a new database (read only by the tests); its DSN and the
    migration's outcome."""
    target = new_database()
    return target, asyncio.run(migrate(source.path, target))


def _sql(dsn: str, statement: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as db:
        cursor = db.execute(statement)
        return cursor.fetchall() if cursor.description else []


def _tables(dsn: str) -> set[str]:
    rows = _sql(dsn, "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
    return {str(row[0]) for row in rows}


def _cosine(a: bytes, b: bytes) -> float:
    return float(np.dot(np.frombuffer(a, dtype="<f4"), np.frombuffer(b, dtype="<f4")))


async def _read(
    store: SqliteStore | PostgresStore, source: Source
) -> tuple[dict[str, object], list[list[int]]]:
    """What `read_back` sees, and the passages nearest a few vectors, nearest first."""
    try:
        seen = await read_back(store, source)
        hits = []
        for n in range(1, 6):
            query = unit_vector(n)
            found = await store.vector_search(SearchFilter(kind="passage"), MODEL, query, 100)
            hits.append([seq for seq, _ in found])
            for seq, cosine in found:  # the store's own cosine, to halfvec's precision
                expected = _cosine(unit_vector(seq), query)
                assert math.isclose(cosine, expected, abs_tol=COSINE_TOLERANCE)
        return seen, hits
    finally:
        await store.close()


def test_every_row_is_copied_and_reads_back_equal(
    source: Source, migrated: tuple[str, Outcome]
) -> None:
    target, outcome = migrated

    assert outcome.verified, outcome.problems
    counts = {check.table: check.target_rows for check in outcome.checks}
    assert counts["agents"] == len(source.agents)
    assert all(counts[table] > 0 for table in counts), counts  # a row in every table
    assert PROGRESS_TABLE not in _tables(target)
    expected, expected_hits = asyncio.run(_read(SqliteStore.open(source.path), source))
    found, found_hits = asyncio.run(_read(PostgresStore.connect(target), source))
    searched = ("kind blocks", "how blocks", "sync conversations", "noted passages")
    assert all(expected[key] for key in (*searched, "passage keyword", "message keyword"))
    assert found == expected
    # HNSW over halfvec may order near-equal cosines differently: the same rows, the best
    # first.
    assert [sorted(hits) for hits in found_hits] == [sorted(hits) for hits in expected_hits]
    assert [hits[0] for hits in found_hits] == [hits[0] for hits in expected_hits]


def test_embeddings_indexes_and_sequences_are_the_stores_own(
    source: Source, migrated: tuple[str, Outcome]
) -> None:
    target, _ = migrated
    with sqlite3.connect(source.path) as db:
        given = dict(db.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for table in ("passage_index", "message_index"):
        rows = _sql(target, f"SELECT vector, embedding::text FROM {table} ORDER BY seq")
        assert any(vector is not None for vector, _ in rows)
        for vector, embedding in rows:
            if vector is None:
                assert embedding is None
                continue
            assert isinstance(vector, bytes)
            stores_own = f"'{halfvec_text(vector)}'::halfvec"
            assert _sql(target, f"SELECT '{embedding}'::halfvec = {stores_own}") == [(True,)]
        indexes = _sql(target, f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'")
        assert (f"{table}_hnsw_8",) in indexes
        # The next key is past every key SQLite gave, deleted rows' too.
        sequence = _sql(target, f"SELECT pg_get_serial_sequence('{table}', 'seq')")[0][0]
        assert _sql(target, f"SELECT last_value, is_called FROM {sequence}") == [
            (given[table], True)
        ]
    passage_keys = _sql(target, "SELECT max(seq) FROM passage_index")[0][0]
    assert isinstance(passage_keys, int)
    assert passage_keys < given["passage_index"]  # the newest passage was deleted


def test_derived_columns_are_what_the_postgres_store_writes(
    source: Source, migrated: tuple[str, Outcome]
) -> None:
    """Columns PostgreSQL has beside the row's JSON hold what the PostgreSQL store would
    have written: whole texts with their NULs dropped (SQLite's json_extract would have
    cut them at the NUL), times as integers."""
    target, _ = migrated

    async def stored() -> tuple[list[Block], list[Passage], list[Message], list[AgentState]]:
        store = SqliteStore.open(source.path)
        try:
            messages = []
            for agent in source.agents:
                query = MessageQuery(agent_id=agent.id, all_threads=True)
                messages += await store.list_messages(query, ALL)
            return (
                await store.get_blocks(source.blocks),
                await store.list_passages([source.archive.id], ALL, None),
                messages,
                [agent for agent in [await store.get_agent(a.id) for a in source.agents] if agent],
            )
        finally:
            await store.close()

    blocks, passages, messages, agents = asyncio.run(stored())
    assert sorted(_sql(target, "SELECT id, value, description FROM blocks")) == sorted(
        (b.id, searchable(b.value), searchable(b.description)) for b in blocks
    )
    assert any("\x00" in b.value for b in blocks)
    assert _sql(target, "SELECT summary FROM conversations") == [
        (searchable(source.conversation.summary),)
    ]
    found = {row[0]: row[1] for row in _sql(target, "SELECT passage_id, text FROM passage_index")}
    assert {p.id: found[p.id] for p in passages} == {p.id: searchable(p.text) for p in passages}
    indexed = {row[0]: row[1] for row in _sql(target, "SELECT message_id, text FROM message_index")}
    assert indexed == {
        m.id: searchable(text) for m in messages if (text := message_search_text(m)) is not None
    }
    runs = sorted(_sql(target, "SELECT id, last_run_completion, last_stop_reason FROM agents"))
    assert runs == sorted(
        (a.id, us_from_datetime(a.last_run_completion), a.last_stop_reason)
        for a in agents
        if a.last_run_completion is not None
    )


def test_a_target_that_holds_data_is_refused(source: Source, migrated: tuple[str, Outcome]) -> None:
    target, _ = migrated
    with pytest.raises(TransferRefused, match="already holds data"):
        asyncio.run(migrate(source.path, target))


def test_verification_sees_a_row_that_differs(
    source: Source, migrated: tuple[str, Outcome], tmp_path: Path
) -> None:
    target, _ = migrated
    changed = tmp_path / "changed.db"
    with sqlite3.connect(source.path) as original, sqlite3.connect(changed) as db:
        original.backup(db)
        db.execute("UPDATE working_memory SET value = '7' WHERE key = 'soon'")

    async def check() -> Outcome:
        db = open_source(changed)
        try:
            async with await psycopg.AsyncConnection.connect(target, autocommit=True) as pg:
                return await verify(db, pg, plan(db, await read_schema(pg)))
        finally:
            db.close()

    outcome = asyncio.run(check())
    assert not outcome.verified
    assert [check.table for check in outcome.checks if not check.ok] == ["working_memory"]
    assert outcome.problems[0].startswith("working_memory: the same 6 rows by count")


def test_a_stopped_migration_continues_where_it_stopped(
    source: Source, new_database: Callable[[], str], tmp_path: Path
) -> None:
    target = new_database()
    stopped = Recorded(stop_after=INTERRUPT_AFTER_BATCHES)
    with pytest.raises(Stop):
        asyncio.run(migrate(source.path, target, batch_rows=SMALL_BATCH_ROWS, progress=stopped))
    rows = _sql(target, f"SELECT sum(rows_copied)::int FROM {PROGRESS_TABLE}")
    copied_before = int(str(rows[0][0]))
    assert 0 < copied_before <= SMALL_BATCH_ROWS * INTERRUPT_AFTER_BATCHES
    other = tmp_path / "other.db"
    with sqlite3.connect(source.path) as original, sqlite3.connect(other) as db:
        original.backup(db)
    with pytest.raises(TransferRefused, match="unfinished migration from"):
        asyncio.run(migrate(other, target))

    resumed = Recorded()
    outcome = asyncio.run(
        migrate(source.path, target, batch_rows=SMALL_BATCH_ROWS, progress=resumed)
    )

    assert outcome.verified, outcome.problems
    assert any(t.earlier_rows > 0 and t.rows > 0 for t in resumed.tables)  # went on mid-table
    copied_now = sum(t.rows for t in resumed.tables)
    assert copied_before + copied_now == sum(check.source_rows for check in outcome.checks)
    assert PROGRESS_TABLE not in _tables(target)


def test_a_table_the_mover_does_not_know_refuses_before_writing(
    source: Source, new_database: Callable[[], str], tmp_path: Path
) -> None:
    target = new_database()
    copy = tmp_path / "kelpie.db"
    with sqlite3.connect(source.path) as original, sqlite3.connect(copy) as db:
        original.backup(db)
        db.execute("CREATE TABLE agent_moods (agent_id TEXT PRIMARY KEY, mood TEXT)")
    with pytest.raises(TransferRefused, match="agent_moods"):
        asyncio.run(migrate(copy, target))
    assert _tables(target) == set()

"""PostgreSQL's search, white box: vectors get an HNSW index per dimension the first time
one of that dimension is saved, and a vector search walks it (the planner's choice, seen
in the index's scan count) rather than sorting every row."""

import asyncio
import time
from typing import Final

import numpy as np
import psycopg

from kelpie.env import Entropy
from kelpie.memory import vector_bytes
from kelpie.schemas import ARCHIVE_PREFIX, PASSAGE_PREFIX, Archive, Passage
from kelpie.storage import SearchFilter
from kelpie.storage._postgres import PostgresStore

from ._backends import empty_database
from ._support import T0

DIM: Final = 16
ROWS: Final = 2_000
STATS_WAIT_S: Final = 10.0
INDEX: Final = f"passage_index_hnsw_{DIM}"


def _index_scans(dsn: str) -> int | None:
    with psycopg.connect(dsn, autocommit=True) as db:
        row = db.execute(
            "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", (INDEX,)
        ).fetchone()
    return None if row is None else int(row[0])


def test_vector_search_walks_an_hnsw_index_of_the_dimension(
    pg_database: str, entropy: Entropy
) -> None:
    empty_database(pg_database)
    with psycopg.connect(pg_database, autocommit=True) as db:
        db.execute(f"DROP INDEX IF EXISTS {INDEX}")
    archive = Archive(id=entropy.new_id(ARCHIVE_PREFIX), name="many", created_at=T0)
    passages = [
        Passage(id=entropy.new_id(PASSAGE_PREFIX), text=f"row {i}", archive_id=archive.id,
                created_at=T0)
        for i in range(ROWS)
    ]  # fmt: skip
    generator = np.random.default_rng(7)
    vectors = generator.standard_normal((ROWS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    async def scenario() -> list[tuple[int, float]]:
        store = await PostgresStore.open(pg_database, pool_max=2)
        assert store.iterative_scans, "pgvector 0.8 (the tests' PostgreSQL) scans iteratively"
        try:
            await store.insert_archive(archive)
            await store.insert_passages(passages)
            keys = await store.filtered_keys(SearchFilter(kind="passage"))
            assert _index_scans(pg_database) is None, "the index exists before any vector"
            await store.save_embeddings(
                "passage",
                "m",
                DIM,
                [(k, vector_bytes(v)) for k, v in zip(keys, vectors, strict=True)],
            )
            with psycopg.connect(pg_database, autocommit=True) as db:
                db.execute("ANALYZE passage_index")
            search = SearchFilter(kind="passage", scopes=(archive.id,))
            return await store.vector_search(search, "m", vector_bytes(vectors[42]), 5)
        finally:
            await store.close()

    ranked = asyncio.run(scenario())
    assert len(ranked) == 5
    assert ranked[0][1] > 0.99  # the row's own vector, through halfvec's precision
    deadline = time.monotonic() + STATS_WAIT_S
    while (_index_scans(pg_database) or 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (_index_scans(pg_database) or 0) >= 1

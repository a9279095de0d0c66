"""The embedding queue's depth, for the metrics: rows without a vector, by kind, counted
up to a cap; embedding them empties it."""

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from kelpie.memory import MemorySearch
from kelpie.storage import SqliteStore

from .conftest import passage


def test_written_rows_wait_until_embedded(store: SqliteStore, search: MemorySearch) -> None:
    asyncio.run(store.insert_passages([passage(n, f"tide {n}") for n in range(1, 6)]))

    assert asyncio.run(search.queue_rows()) == {"passage": 5, "message": 0}

    asyncio.run(search.embed_pending("passage", (), 3))
    assert asyncio.run(search.queue_rows())["passage"] == 2
    asyncio.run(search.embed_pending("passage", (), 10))
    assert asyncio.run(search.queue_rows())["passage"] == 0


def test_the_count_stops_at_its_limit(store: SqliteStore) -> None:
    asyncio.run(store.insert_passages([passage(n, f"wave {n}") for n in range(1, 8)]))

    assert asyncio.run(store.count_pending_embeddings("passage", 4)) == 4
    assert asyncio.run(store.count_pending_embeddings("passage", 100)) == 7


def test_a_batch_walks_the_pending_rows_in_key_order_not_the_table(
    store: SqliteStore, tmp_path: Path
) -> None:
    """A backlog must not make each batch slower: the query the worker runs is planned as a
    walk of the pending index (found in a soak: a full scan of the FTS table per batch)."""
    asyncio.run(store.insert_passages([passage(n, f"reef {n}") for n in range(1, 4)]))
    asked: list[tuple[str, list[object]]] = []
    read = store._read

    def recording(sql: str, params: Any = ()) -> Any:
        asked.append((sql, list(params)))
        return read(sql, params)

    store._read = recording  # type: ignore[method-assign]
    for kind in ("passage", "message"):
        asyncio.run(store.pending_embeddings(kind, (), 2))

    with sqlite3.connect(tmp_path / "kelpie.db") as db:
        for sql, params in asked:
            plan = " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert plan.startswith("SCAN i USING INDEX"), plan
            assert "_pending_seq" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
    assert len(asked) == 2

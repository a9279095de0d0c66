"""The embedding queue's depth, for the metrics: rows without a vector, by kind, counted
up to a cap; embedding them empties it."""

import asyncio

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

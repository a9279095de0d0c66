"""Hybrid search over a real SQLite store with the deterministic embedder: filters apply
before the top k, fresh rows are found before the worker embeds them, deleted rows drop
out, re-embedding replaces vectors, and the worker resumes pending rows."""

import asyncio
from collections.abc import Sequence

import pytest

from kelpie.env import SystemClock
from kelpie.memory import HashingEmbedder, MemorySearch
from kelpie.schemas import Passage
from kelpie.storage import SearchFilter, SqliteStore

from .conftest import ARCHIVE, OTHER_ARCHIVE, T0, passage

SCOPE = SearchFilter(kind="passage", scopes=(ARCHIVE,))


def _ids(found: Sequence[tuple[Passage, float]]) -> list[str]:
    return [p.text for p, _ in found]


def _search(search: MemorySearch, query: str, limit: int = 5, **filters: object) -> list[str]:
    scope = SearchFilter(kind="passage", scopes=(ARCHIVE,), **filters)  # type: ignore[arg-type]  # test helper: filter fields by name
    return _ids(asyncio.run(search.search_passages(scope, query, limit)))


def test_written_rows_are_found_before_the_worker_runs(
    store: SqliteStore, search: MemorySearch
) -> None:
    asyncio.run(store.insert_passages([passage(1, "the kelp forest sways"), passage(2, "gulls")]))
    assert asyncio.run(store.count_embeddings("passage", search.embedder.model)) == (0, 2)

    assert _search(search, "kelp forest", 1) == ["the kelp forest sways"]
    assert asyncio.run(store.count_embeddings("passage", search.embedder.model)) == (2, 2)


def test_keyword_mode_finds_rows_without_vectors(store: SqliteStore) -> None:
    asyncio.run(store.insert_passages([passage(1, "reef sharks at dawn")]))
    search = MemorySearch(store, HashingEmbedder(), SystemClock())
    found = asyncio.run(search.search_passages(SCOPE, "sharks", 3, "fts"))
    assert _ids(found) == ["reef sharks at dawn"]
    assert asyncio.run(store.count_embeddings("passage", search.embedder.model)) == (0, 1)


def test_tag_filters_apply_before_the_top_k(store: SqliteStore, search: MemorySearch) -> None:
    rows = [passage(n, f"tide pool note {n}", tags=("tide",)) for n in range(1, 21)]
    rows += [
        passage(21, "tide pool crab", tags=("crab", "shore")),
        passage(22, "a crab", tags=("crab",)),
    ]
    asyncio.run(store.insert_passages(rows))

    assert _search(search, "tide pool note", 2, tags=("crab",)) == [
        "tide pool crab",
        "a crab",
    ]
    assert _search(search, "tide pool", 5, tags=("crab", "shore"), match_all_tags=True) == [
        "tide pool crab"
    ]
    assert len(_search(search, "tide", 30, tags=("shore", "tide"))) == 21


def test_date_range_filters_apply_before_the_top_k(
    store: SqliteStore, search: MemorySearch
) -> None:
    rows = [passage(n, f"storm warning {n}", days=n) for n in range(1, 11)]
    asyncio.run(store.insert_passages(rows))
    start = int((T0.timestamp() + 3 * 86400) * 1_000_000)
    end = int((T0.timestamp() + 4 * 86400) * 1_000_000)

    found = _search(search, "storm warning", 5, start_us=start, end_us=end)

    assert sorted(found) == ["storm warning 3", "storm warning 4"]


def test_search_covers_only_its_scopes(store: SqliteStore, search: MemorySearch) -> None:
    asyncio.run(
        store.insert_passages(
            [passage(1, "lighthouse keeper"), passage(2, "lighthouse", archive_id=OTHER_ARCHIVE)]
        )
    )
    both = SearchFilter(kind="passage", scopes=(ARCHIVE, OTHER_ARCHIVE))

    assert _search(search, "lighthouse") == ["lighthouse keeper"]
    assert len(asyncio.run(search.search_passages(both, "lighthouse", 5))) == 2


def test_deleted_rows_drop_out_of_a_cached_scope(store: SqliteStore, search: MemorySearch) -> None:
    asyncio.run(store.insert_passages([passage(n, f"drift {n}") for n in range(1, 6)]))
    assert len(_search(search, "drift", 5)) == 5

    asyncio.run(store.delete_passage([ARCHIVE], passage(3, "").id))

    assert sorted(_search(search, "drift", 5)) == ["drift 1", "drift 2", "drift 4", "drift 5"]


def test_new_vectors_extend_a_cached_scope(store: SqliteStore, search: MemorySearch) -> None:
    asyncio.run(store.insert_passages([passage(1, "foam on the sand")]))
    assert _search(search, "foam", 5) == ["foam on the sand"]

    asyncio.run(store.insert_passages([passage(2, "sea foam")]))

    assert sorted(_search(search, "foam", 5)) == [
        "foam on the sand",
        "sea foam",
    ]


def test_vectors_of_another_model_are_ignored_until_reembedded(store: SqliteStore) -> None:
    asyncio.run(store.insert_passages([passage(1, "shell collection"), passage(2, "pebbles")]))
    old = MemorySearch(store, HashingEmbedder(dim=64), SystemClock())
    asyncio.run(old.embed_pending("passage", (), 10))
    new = MemorySearch(store, HashingEmbedder(), SystemClock())

    assert _ids(asyncio.run(new.search_passages(SCOPE, "shell", 5, "vector"))) == []
    assert asyncio.run(new.reembed("passage")) == 2
    assert asyncio.run(new.reembed("passage")) == 0
    assert _ids(asyncio.run(new.search_passages(SCOPE, "shell", 1, "vector"))) == [
        "shell collection"
    ]


def test_worker_embeds_pending_rows_of_every_kind(store: SqliteStore) -> None:
    search = MemorySearch(store, HashingEmbedder(), SystemClock())
    asyncio.run(store.insert_passages([passage(n, f"note {n}") for n in range(1, 100)]))

    async def run_briefly() -> None:
        worker = asyncio.ensure_future(search.run_worker())
        for _ in range(100):
            await asyncio.sleep(0)
            done, _ = await store.count_embeddings("passage", search.embedder.model)
            if done == 99:
                break
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker

    asyncio.run(run_briefly())
    assert asyncio.run(store.count_embeddings("passage", search.embedder.model)) == (99, 99)


def test_query_with_fts_syntax_is_searched_literally(
    store: SqliteStore, search: MemorySearch
) -> None:
    asyncio.run(store.insert_passages([passage(1, 'say "NEAR" or (not)')]))
    for mode in ("fts", "hybrid"):
        found = asyncio.run(search.search_passages(SCOPE, 'NEAR( "or" * -not:', 3, mode))
        assert _ids(found) == ['say "NEAR" or (not)']

"""Retrieval quality with the local embedder on a dataset the tests ship: 110 facts about
one person (data/facts.txt) and, written separately, one paraphrased question per fact
(data/queries.tsv: fact line number, question). Hybrid search must put the fact in the top
3 for at least 90% of the questions, and do better than keyword search alone."""

import asyncio
from pathlib import Path
from typing import Final

from kelpie.env import SystemClock
from kelpie.memory import LocalEmbedder, MemorySearch
from kelpie.schemas import SearchMode
from kelpie.storage import SearchFilter, SqliteStore

from .conftest import ARCHIVE, passage

DATA: Final = Path(__file__).parent / "data"
TOP_K: Final = 3
HYBRID_ACCURACY_MIN: Final = 0.9


def _dataset() -> tuple[list[str], list[tuple[int, str]]]:
    facts = (DATA / "facts.txt").read_text().splitlines()
    queries = []
    for line in (DATA / "queries.tsv").read_text().splitlines():
        number, question = line.split("\t")
        queries.append((int(number), question))
    return facts, queries


async def _accuracies(store: SqliteStore, embedder: LocalEmbedder) -> dict[SearchMode, float]:
    facts, queries = _dataset()
    await store.insert_passages([passage(n, text) for n, text in enumerate(facts, start=1)])
    search = MemorySearch(store, embedder, SystemClock())
    await search.embed_pending("passage", (), len(facts))
    scope = SearchFilter(kind="passage", scopes=(ARCHIVE,))
    accuracies: dict[SearchMode, float] = {}
    for mode in ("hybrid", "vector", "fts"):
        hits = 0
        for number, question in queries:
            found = await search.search_passages(scope, question, TOP_K, mode)
            hits += passage(number, "").id in [p.id for p, _ in found]
        accuracies[mode] = hits / len(queries)
    return accuracies


def test_dataset_has_a_paraphrased_question_per_fact() -> None:
    facts, queries = _dataset()
    assert len(facts) >= 100
    assert sorted(number for number, _ in queries) == list(range(1, len(facts) + 1))
    for number, question in queries:
        assert question.lower() not in facts[number - 1].lower()


def test_hybrid_search_finds_the_fact_in_the_top_3(
    store: SqliteStore, local_embedder: LocalEmbedder
) -> None:
    accuracies = asyncio.run(_accuracies(store, local_embedder))

    assert accuracies["hybrid"] >= HYBRID_ACCURACY_MIN, accuracies
    assert accuracies["hybrid"] > accuracies["fts"], accuracies
    assert accuracies["hybrid"] >= accuracies["vector"], accuracies

"""The search role of the Store, the same assertions on every backend (SQLite: FTS5 and an
exact in-process index; PostgreSQL: tsvector and pgvector's HNSW, or exact search past its
dimensions):

- Keyword search finds the rows holding every word (or any word), stemmed ('grazing'
  finds 'graze'), most relevant first, within the filter: scope, dates, roles (messages),
  tags, any or all of them (passages).
- Vector search returns (key, cosine) nearest first, only vectors by the model asked
  for, within the same filters; a dimension past HNSW's 4,000 is still searched (exactly).
- The embedding queue: rows wait without a vector in write order, a scope's first; saved
  vectors leave the queue and are counted by model; a vector for a key deleted meanwhile
  is skipped; re-embedding walks rows whose vector is another model's.
- Rows are read back by key; keys of deleted rows are absent (and leave the index).
"""

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import pytest

from kelpie.env import Entropy
from kelpie.memory import vector_bytes
from kelpie.schemas import (
    ARCHIVE_PREFIX,
    MESSAGE_PREFIX,
    PASSAGE_PREFIX,
    Archive,
    Message,
    Passage,
    us_from_datetime,
)
from kelpie.storage import SearchFilter

from ._backends import Backend, Conformance
from ._support import T0, agent_config, at

MODEL: Final = "test-model"
DIM: Final = 8
HUGE_DIM: Final = 4_001  # past halfvec's HNSW limit
COSINE_TOLERANCE: Final = 2e-3  # halfvec keeps ~3 significant digits


def _archive(entropy: Entropy, name: str) -> Archive:
    return Archive(id=entropy.new_id(ARCHIVE_PREFIX), name=name, created_at=T0)


def _passage(
    entropy: Entropy, archive: Archive, text: str, *, second: int = 0, tags: Sequence[str] = ()
) -> Passage:
    return Passage(
        id=entropy.new_id(PASSAGE_PREFIX),
        text=text,
        archive_id=archive.id,
        tags=list(tags),
        created_at=at(second),
    )


def _unit(*weights: float, dim: int = DIM) -> bytes:
    """A unit vector from its first components (the rest zero), as stored bytes."""
    values = np.zeros(dim, dtype=np.float32)
    values[: len(weights)] = weights
    return vector_bytes(values / np.linalg.norm(values))


def _passages_of(*archives: Archive) -> SearchFilter:
    return SearchFilter(kind="passage", scopes=tuple(a.id for a in archives))


async def _keys(store: Conformance, search: SearchFilter) -> dict[str, int]:
    """Index key of each row the filter lets through, by the row's id."""
    keys = await store.filtered_keys(search)
    rows = await store.passages_by_key(keys)
    return {rows[key].id: key for key in keys}


async def _store_passages(store: Conformance, archive: Archive, *passages: Passage) -> None:
    await store.insert_archive(archive)
    await store.insert_passages(list(passages))


def test_keyword_search_finds_every_word_or_any_word_stemmed(
    backend: Backend, entropy: Entropy
) -> None:
    archive = _archive(entropy, "sea")
    both = _passage(entropy, archive, "Kelp forests shelter sea otters")
    otters = _passage(entropy, archive, "Otters eat urchins")
    urchins = _passage(entropy, archive, "Urchins graze the kelp")

    async def scenario(store: Conformance) -> None:
        await _store_passages(store, archive, both, otters, urchins)
        key = await _keys(store, _passages_of(archive))
        search = _passages_of(archive)
        every = await store.keyword_search(search, ("kelp", "otters"), every_word=True, limit=10)
        assert every == [key[both.id]]
        anyone = await store.keyword_search(search, ("kelp", "otters"), every_word=False, limit=10)
        assert anyone[0] == key[both.id]
        assert set(anyone) == {key[both.id], key[otters.id], key[urchins.id]}
        assert await store.keyword_search(
            search, ("kelp", "otters"), every_word=False, limit=1
        ) == [key[both.id]]
        stemmed = await store.keyword_search(search, ("grazing",), every_word=True, limit=10)
        assert stemmed == [key[urchins.id]]
        assert await store.keyword_search(search, ("whales",), every_word=False, limit=10) == []

    backend.run(scenario)


def test_keyword_search_keeps_to_the_filter(backend: Backend, entropy: Entropy) -> None:
    mine, theirs = _archive(entropy, "mine"), _archive(entropy, "theirs")
    early = _passage(entropy, mine, "tide pools at dawn", second=1, tags=["sea", "dawn"])
    late = _passage(entropy, mine, "tide pools at dusk", second=5, tags=["sea"])
    other = _passage(entropy, theirs, "tide pools elsewhere", second=3, tags=["sea", "dawn"])

    async def scenario(store: Conformance) -> None:
        await _store_passages(store, mine, early, late)
        await _store_passages(store, theirs, other)
        key = await _keys(store, SearchFilter(kind="passage"))

        async def found(search: SearchFilter) -> set[int]:
            return set(await store.keyword_search(search, ("tide",), every_word=True, limit=10))

        assert await found(SearchFilter(kind="passage")) == {
            key[early.id],
            key[late.id],
            key[other.id],
        }
        assert await found(_passages_of(mine)) == {key[early.id], key[late.id]}
        window = SearchFilter(
            kind="passage", start_us=us_from_datetime(at(2)), end_us=us_from_datetime(at(5))
        )
        assert await found(window) == {key[late.id], key[other.id]}
        assert await found(SearchFilter(kind="passage", tags=("dawn", "sea"))) == {
            key[early.id],
            key[late.id],
            key[other.id],
        }
        every_tag = SearchFilter(kind="passage", tags=("dawn", "sea"), match_all_tags=True)
        assert await found(every_tag) == {key[early.id], key[other.id]}
        mine_every_tag = SearchFilter(
            kind="passage", scopes=(mine.id,), tags=("dawn", "sea"), match_all_tags=True
        )
        assert await found(mine_every_tag) == {key[early.id]}

    backend.run(scenario)


def test_recall_search_filters_messages_by_agent_and_role(
    backend: Backend, entropy: Entropy
) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")

    def message(agent_id: str, role: str, text: str, second: int) -> Message:
        return Message(
            id=entropy.new_id(MESSAGE_PREFIX),
            agent_id=agent_id,
            role=role,  # type: ignore[arg-type]
            text=text,
            created_at=at(second),
        )

    asked = message(ada.id, "user", "where do otters sleep", 1)
    answered = message(ada.id, "assistant", "otters sleep holding hands", 2)
    system = message(ada.id, "system", "otters are the topic", 0)
    elsewhere = message(bob.id, "user", "otters again", 3)

    async def scenario(store: Conformance) -> None:
        for agent in (ada, bob):
            await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=())
        await store.insert_messages([system, asked, answered, elsewhere])
        everyone = SearchFilter(kind="message")
        keys = await store.filtered_keys(everyone)
        by_id = {m.id: k for k, m in (await store.messages_by_key(keys)).items()}
        assert set(by_id) == {asked.id, answered.id, elsewhere.id}  # system messages never

        async def found(search: SearchFilter) -> set[int]:
            return set(await store.keyword_search(search, ("otters",), every_word=True, limit=10))

        assert await found(SearchFilter(kind="message", scopes=(ada.id,))) == {
            by_id[asked.id],
            by_id[answered.id],
        }
        assert await found(SearchFilter(kind="message", scopes=(ada.id,), roles=("user",))) == {
            by_id[asked.id]
        }

    backend.run(scenario)


def test_vector_search_ranks_by_cosine_within_model_and_filter(
    backend: Backend, entropy: Entropy
) -> None:
    archive, other = _archive(entropy, "near"), _archive(entropy, "far")
    exact = _passage(entropy, archive, "exact", tags=["keep"])
    close = _passage(entropy, archive, "close", tags=["keep"])
    orthogonal = _passage(entropy, archive, "orthogonal")
    elsewhere = _passage(entropy, other, "elsewhere")
    old_model = _passage(entropy, archive, "old model")

    async def scenario(store: Conformance) -> None:
        await _store_passages(store, archive, exact, close, orthogonal, old_model)
        await _store_passages(store, other, elsewhere)
        key = await _keys(store, SearchFilter(kind="passage"))
        await store.save_embeddings(
            "passage",
            MODEL,
            DIM,
            [
                (key[exact.id], _unit(1.0)),
                (key[close.id], _unit(1.0, 1.0)),
                (key[orthogonal.id], _unit(0.0, 1.0)),
                (key[elsewhere.id], _unit(1.0)),
            ],
        )
        await store.save_embeddings(
            "passage", "another-model", DIM, [(key[old_model.id], _unit(1.0))]
        )
        query = _unit(1.0)
        ranked = await store.vector_search(_passages_of(archive), MODEL, query, 10)
        assert [k for k, _ in ranked] == [key[exact.id], key[close.id], key[orthogonal.id]]
        scores = [score for _, score in ranked]
        expected = [1.0, 1 / math.sqrt(2), 0.0]
        assert scores == pytest.approx(expected, abs=COSINE_TOLERANCE)
        top = await store.vector_search(_passages_of(archive), MODEL, query, 1)
        assert [k for k, _ in top] == [key[exact.id]]
        both = await store.vector_search(_passages_of(archive, other), MODEL, query, 10)
        assert {k for k, _ in both} == {
            key[exact.id],
            key[close.id],
            key[orthogonal.id],
            key[elsewhere.id],
        }
        tagged = SearchFilter(kind="passage", scopes=(archive.id,), tags=("keep",))
        assert [k for k, _ in await store.vector_search(tagged, MODEL, _unit(0.0, 1.0), 10)] == [
            key[close.id],
            key[exact.id],
        ]

    backend.run(scenario)


def test_vectors_past_the_hnsw_limit_are_searched_exactly(
    backend: Backend, entropy: Entropy
) -> None:
    archive = _archive(entropy, "huge")
    near = _passage(entropy, archive, "near")
    far = _passage(entropy, archive, "far")

    async def scenario(store: Conformance) -> None:
        await _store_passages(store, archive, near, far)
        key = await _keys(store, _passages_of(archive))
        await store.save_embeddings(
            "passage",
            MODEL,
            HUGE_DIM,
            [
                (key[near.id], _unit(1.0, 0.1, dim=HUGE_DIM)),
                (key[far.id], _unit(0.0, 1.0, dim=HUGE_DIM)),
            ],
        )
        ranked = await store.vector_search(
            _passages_of(archive), MODEL, _unit(1.0, dim=HUGE_DIM), 10
        )
        assert [k for k, _ in ranked] == [key[near.id], key[far.id]]

    backend.run(scenario)


def test_the_embedding_queue_in_write_order(backend: Backend, entropy: Entropy) -> None:
    archive, other = _archive(entropy, "queue"), _archive(entropy, "other")
    first = _passage(entropy, archive, "first")
    second = _passage(entropy, archive, "second")
    third = _passage(entropy, other, "third")

    async def scenario(store: Conformance) -> None:
        await _store_passages(store, archive, first, second)
        await _store_passages(store, other, third)
        key = await _keys(store, SearchFilter(kind="passage"))
        assert await store.pending_embeddings("passage", (), 10) == [
            (key[first.id], "first"),
            (key[second.id], "second"),
            (key[third.id], "third"),
        ]
        assert await store.pending_embeddings("passage", (other.id,), 10) == [
            (key[third.id], "third")
        ]
        assert await store.count_pending_embeddings("passage", 2) == 2
        await store.save_embeddings("passage", MODEL, DIM, [(key[first.id], _unit(1.0))])
        assert await store.pending_embeddings("passage", (), 1) == [(key[second.id], "second")]
        assert await store.count_embeddings("passage", MODEL) == (1, 3)
        assert await store.count_embeddings("passage", "another-model") == (0, 3)
        assert await store.stale_embeddings("passage", "another-model", 0, 10) == [
            (key[first.id], "first"),
            (key[second.id], "second"),
            (key[third.id], "third"),
        ]
        assert await store.stale_embeddings("passage", MODEL, key[first.id], 10) == [
            (key[second.id], "second"),
            (key[third.id], "third"),
        ]
        assert await store.delete_passage([archive.id], second.id) is True
        await store.save_embeddings("passage", MODEL, DIM, [(key[second.id], _unit(1.0))])
        assert await store.count_embeddings("passage", MODEL) == (1, 2)
        assert await store.count_pending_embeddings("passage", 10) == 1

    backend.run(scenario)


def test_rows_by_key_leave_out_deleted_rows(backend: Backend, entropy: Entropy) -> None:
    archive = _archive(entropy, "gone")
    kept = _passage(entropy, archive, "kept")
    deleted = _passage(entropy, archive, "deleted")

    async def scenario(store: Conformance) -> None:
        await _store_passages(store, archive, kept, deleted)
        key = await _keys(store, _passages_of(archive))
        await store.save_embeddings(
            "passage", MODEL, DIM, [(key[kept.id], _unit(1.0)), (key[deleted.id], _unit(1.0))]
        )
        assert len(await store.vector_search(_passages_of(archive), MODEL, _unit(1.0), 10)) == 2
        assert await store.delete_passage([archive.id], deleted.id) is True
        rows = await store.passages_by_key([key[kept.id], key[deleted.id]])
        assert {k: p.id for k, p in rows.items()} == {key[kept.id]: kept.id}
        ranked = await store.vector_search(_passages_of(archive), MODEL, _unit(1.0), 10)
        assert [k for k, _ in ranked] == [key[kept.id]]

    backend.run(scenario)

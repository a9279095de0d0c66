"""The embedders: unit vectors of the declared dimension; the local model's vectors look
like all-MiniLM-L6-v2's (paraphrases close, unrelated sentences far apart); the hashing
embedder is deterministic."""

import asyncio

import numpy as np
import pytest

from kelpie.memory import HASHING_DIM, LOCAL_DIM, LOCAL_MODEL, HashingEmbedder, LocalEmbedder


def test_local_embedder_makes_unit_vectors_with_meaning(local_embedder: LocalEmbedder) -> None:
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome.",
        "",
    ]
    vectors = asyncio.run(local_embedder.embed(texts))

    assert local_embedder.model == LOCAL_MODEL
    assert vectors.shape == (4, LOCAL_DIM)
    assert vectors.dtype == np.float32
    assert np.linalg.norm(vectors[:3], axis=1) == pytest.approx(1.0, abs=1e-4)
    # sentence-transformers gives 0.755 for this pair with the float model.
    assert float(vectors[0] @ vectors[1]) == pytest.approx(0.755, abs=0.03)
    assert float(vectors[0] @ vectors[2]) < 0.2


def test_local_embedder_keeps_the_order_of_mixed_lengths(local_embedder: LocalEmbedder) -> None:
    texts = ["short", "a much longer sentence about sailing boats on the sea", "mid length"]
    together = asyncio.run(local_embedder.embed(texts))
    alone = np.vstack([asyncio.run(local_embedder.embed([text])) for text in texts])
    assert together == pytest.approx(alone, abs=1e-4)


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    embedder = HashingEmbedder()
    first = asyncio.run(embedder.embed(["the tide is high", "kelp forest", ""]))
    second = asyncio.run(embedder.embed(["the tide is high", "kelp forest", ""]))

    assert first.shape == (3, HASHING_DIM)
    assert np.array_equal(first, second)
    assert np.linalg.norm(first[:2], axis=1) == pytest.approx(1.0, abs=1e-5)
    assert not first[2].any()
    related, unrelated = asyncio.run(embedder.embed(["the tide is high today", "granite"]))
    assert float(first[0] @ related) > float(first[0] @ unrelated)

"""A deterministic embedder for the simulator and fast tests: feature hashing of words and
word pairs into a fixed number of signed buckets, then unit length. Same text, same vector,
in every process (blake2b, not `hash()`); texts sharing words are similar. It has the shape
of a real embedder (model id, dimension, normalised float32 rows) and no threads."""

import hashlib
import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, final

from kelpie.memory._embedder import normalised

if TYPE_CHECKING:
    from kelpie.memory._embedder import Vectors

HASHING_MODEL: Final = "kelpie/hashing-v1"
HASHING_DIM: Final = 384
_WORD: Final = re.compile(r"\w+")


@final
class HashingEmbedder:
    def __init__(self, dim: int = HASHING_DIM) -> None:
        assert dim > 0, "dimension must be positive"
        self._dim = dim

    @property
    def model(self) -> str:
        return HASHING_MODEL if self._dim == HASHING_DIM else f"{HASHING_MODEL}-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    async def embed(self, texts: Sequence[str]) -> "Vectors":
        import numpy as np

        vectors = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            features = [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]
            for feature in features:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                vectors[row, value % self._dim] += 1.0 if value >> 63 else -1.0
        return normalised(vectors)

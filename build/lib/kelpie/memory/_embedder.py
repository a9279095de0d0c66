"""The embedder seam: text in, unit-length float32 vectors out. Every vector is stored with
the model id and dimension of the embedder that made it, so vectors of different models
are never compared."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from kelpie.errors import Unavailable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]

# Texts per call to a model: bounds memory and latency of one batch.
EMBED_BATCH_TEXTS_MAX: Final = 64
# Characters of one text sent to a model (the local model reads at most 256 tokens anyway).
EMBED_TEXT_CHARS_MAX: Final = 8_000


class EmbeddingFailed(Unavailable):
    """The embedding model could not be run or reached; retrying may succeed."""


class Embedder(Protocol):
    @property
    def model(self) -> str:
        """The id stored with every vector this embedder makes, e.g. a model handle."""
        ...

    @property
    def dim(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> "Vectors":
        """One unit-length row per text (shape `(len(texts), dim)`, float32); a text with
        nothing to embed gets a zero row. Raises EmbeddingFailed."""
        ...


def normalised(vectors: "Vectors") -> "Vectors":
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    scaled: Vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return scaled


def vector_bytes(vector: "Vectors") -> bytes:
    """How a vector is stored: float32, little-endian."""
    return vector.astype("<f4").tobytes()

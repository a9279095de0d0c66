"""Memory search: the `Embedder` seam and its implementations (a local ONNX model, any
OpenAI-compatible server, a deterministic one for simulation), and hybrid (vector +
keyword) search of archival passages and recall messages fused by reciprocal rank, with the
background worker that embeds what was written.

It imports kelpie.storage, kelpie.env, kelpie.schemas and kelpie.errors; the storage layer
keeps the rows and ranks them each way (its indexes are the backend's), this layer embeds
the query and fuses the rankings. numpy and the model runtimes are imported on first use,
never at start-up.
"""

from kelpie.memory._archives import archival_result, archive_id_of
from kelpie.memory._embedder import (
    EMBED_BATCH_TEXTS_MAX,
    EMBED_TEXT_CHARS_MAX,
    Embedder,
    EmbeddingFailed,
    normalised,
    vector_bytes,
)
from kelpie.memory._fusion import RRF_K, query_words, reciprocal_rank_fusion
from kelpie.memory._hashing import HASHING_DIM, HASHING_MODEL, HashingEmbedder
from kelpie.memory._local import LOCAL_DIM, LOCAL_MODEL, LocalEmbedder
from kelpie.memory._openai import OPENAI_EMBEDDING_DIMS, OpenAIEmbedder
from kelpie.memory._search import (
    PENDING_EMBEDDED_ON_SEARCH_MAX,
    MemorySearch,
)

__all__ = [
    "EMBED_BATCH_TEXTS_MAX",
    "EMBED_TEXT_CHARS_MAX",
    "HASHING_DIM",
    "HASHING_MODEL",
    "LOCAL_DIM",
    "LOCAL_MODEL",
    "OPENAI_EMBEDDING_DIMS",
    "PENDING_EMBEDDED_ON_SEARCH_MAX",
    "RRF_K",
    "Embedder",
    "EmbeddingFailed",
    "HashingEmbedder",
    "LocalEmbedder",
    "MemorySearch",
    "OpenAIEmbedder",
    "archival_result",
    "archive_id_of",
    "normalised",
    "query_words",
    "reciprocal_rank_fusion",
    "vector_bytes",
]

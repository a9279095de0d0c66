"""Memory search: the `Embedder` seam and its implementations (a local ONNX model, any
OpenAI-compatible server, a deterministic one for simulation), exact vector search from a
bounded cache, and hybrid (vector + FTS5) search of archival passages and recall messages
fused by reciprocal rank, with the background worker that embeds what was written.

It imports kelpie.storage, kelpie.env, kelpie.schemas and kelpie.errors; the storage layer
keeps the rows (vectors as bytes, FTS5 tables), this layer ranks them. numpy and the model
runtimes are imported on first use, never at start-up.
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
from kelpie.memory._fusion import RRF_K, keyword_query, reciprocal_rank_fusion
from kelpie.memory._hashing import HASHING_DIM, HASHING_MODEL, HashingEmbedder
from kelpie.memory._local import LOCAL_DIM, LOCAL_MODEL, LocalEmbedder
from kelpie.memory._openai import OPENAI_EMBEDDING_DIMS, OpenAIEmbedder
from kelpie.memory._search import (
    PENDING_EMBEDDED_ON_SEARCH_MAX,
    MemorySearch,
)
from kelpie.memory._vectors import VECTOR_CACHE_BYTES_MAX, VectorCache, VectorFilter

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
    "VECTOR_CACHE_BYTES_MAX",
    "Embedder",
    "EmbeddingFailed",
    "HashingEmbedder",
    "LocalEmbedder",
    "MemorySearch",
    "OpenAIEmbedder",
    "VectorCache",
    "VectorFilter",
    "archival_result",
    "archive_id_of",
    "keyword_query",
    "normalised",
    "reciprocal_rank_fusion",
    "vector_bytes",
]

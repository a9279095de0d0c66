"""Model configuration shapes: LlmConfig, EmbeddingConfig and the /v1/models listings."""

from typing import Final

from kelpie.schemas._base import ResponseModel

EMBEDDING_CHUNK_SIZE_DEFAULT: Final = 300
# The largest context window a request may set (Letta sets none; 10M tokens is beyond
# every model's, and keeps token arithmetic and stored values sane).
CONTEXT_WINDOW_TOKENS_MAX: Final = 10_000_000


class LlmConfig(ResponseModel):
    model: str
    model_endpoint_type: str
    context_window: int
    model_endpoint: str | None = None
    handle: str | None = None
    provider_name: str | None = None
    provider_category: str | None = "base"
    display_name: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    enable_reasoner: bool | None = None
    reasoning_effort: str | None = None
    max_reasoning_tokens: int | None = None
    put_inner_thoughts_in_kwargs: bool | None = False
    parallel_tool_calls: bool | None = None
    strict: bool | None = None


class Model(LlmConfig):
    """An entry of `GET /v1/models/`: an LlmConfig plus the fields the listing requires."""

    name: str
    max_context_window: int
    provider_type: str
    model_type: str = "llm"


class EmbeddingConfig(ResponseModel):
    embedding_endpoint_type: str
    embedding_model: str
    embedding_dim: int
    embedding_endpoint: str | None = None
    embedding_chunk_size: int | None = EMBEDDING_CHUNK_SIZE_DEFAULT
    handle: str | None = None
    batch_size: int | None = None


class EmbeddingModel(EmbeddingConfig):
    """An entry of `GET /v1/models/embedding`."""

    name: str
    display_name: str
    provider_name: str
    provider_type: str
    model_type: str = "embedding"

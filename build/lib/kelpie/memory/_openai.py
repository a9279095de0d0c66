"""Embeddings from OpenAI or any OpenAI-compatible server (Ollama, vLLM, LM Studio,
llama.cpp), through the official `openai` SDK, imported on first use."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, final

from kelpie.memory._embedder import (
    EMBED_BATCH_TEXTS_MAX,
    EMBED_TEXT_CHARS_MAX,
    EmbeddingFailed,
    normalised,
)

if TYPE_CHECKING:
    from kelpie.memory._embedder import Vectors

EMBED_REQUEST_TIMEOUT_S: Final = 60.0
EMBED_ATTEMPTS_MAX: Final = 3
# Dimensions of OpenAI's own models; other servers' models need KELPIE_EMBEDDING_DIM.
OPENAI_EMBEDDING_DIMS: Final = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


@final
class OpenAIEmbedder:
    def __init__(
        self, *, model_name: str, dim: int, base_url: str | None, api_key: str | None
    ) -> None:
        assert dim > 0, "dimension must be positive"
        self._model_name = model_name
        self._dim = dim
        self._base_url = base_url
        self._api_key = api_key
        self._client: Any = None

    @property
    def model(self) -> str:
        return f"openai/{self._model_name}"

    @property
    def dim(self) -> int:
        return self._dim

    def _sdk(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                api_key=self._api_key or "unused",
                base_url=self._base_url,
                timeout=EMBED_REQUEST_TIMEOUT_S,
                max_retries=EMBED_ATTEMPTS_MAX - 1,
            )
        return self._client

    async def embed(self, texts: Sequence[str]) -> "Vectors":
        import numpy as np
        import openai

        vectors = np.zeros((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), EMBED_BATCH_TEXTS_MAX):
            batch = [text[:EMBED_TEXT_CHARS_MAX] or " " for text in texts[start:]]
            batch = batch[:EMBED_BATCH_TEXTS_MAX]
            try:
                response = await self._sdk().embeddings.create(model=self._model_name, input=batch)
            except openai.OpenAIError as error:
                raise EmbeddingFailed(f"embedding with {self.model} failed: {error}") from error
            for item in response.data:
                if len(item.embedding) != self._dim:
                    raise EmbeddingFailed(
                        f"{self.model} returned {len(item.embedding)} dimensions, expected"
                        f" {self._dim} (set KELPIE_EMBEDDING_DIM)"
                    )
                vectors[start + item.index] = item.embedding
        return normalised(vectors)

"""The catalogue of configured models: what `/v1/models` lists and how a handle such as
`openai/gpt-4o-mini` becomes an LlmConfig.

Providers are asked for their models through the official SDKs (imported lazily: they cost
hundreds of milliseconds to import, and start-up must stay under a second). Listings are
cached; resolving a handle never touches the network, so agent creation stays fast.
"""

import dataclasses
import logging
from typing import Final, Protocol, final

from kelpie.env import Clock, Config
from kelpie.errors import InvalidInput
from kelpie.schemas import EmbeddingConfig, EmbeddingModel, LlmConfig, Model

MODEL_LIST_CACHE_S: Final = 60.0
PROVIDER_LIST_TIMEOUT_S: Final = 5.0
OPENAI_BASE_URL_DEFAULT: Final = "https://api.openai.com/v1"
ANTHROPIC_BASE_URL_DEFAULT: Final = "https://api.anthropic.com"

LOCAL_EMBEDDING: Final = EmbeddingModel(
    name="all-MiniLM-L6-v2",
    display_name="all-MiniLM-L6-v2 (local, int8 ONNX)",
    handle="kelpie/all-minilm-l6-v2",
    provider_name="kelpie",
    # The SDK types provider_type as a closed set; the model is a Hugging Face one.
    provider_type="hugging-face",
    embedding_endpoint_type="hugging-face",
    embedding_model="all-MiniLM-L6-v2",
    embedding_dim=384,
)

# Context windows of well-known models, matched by prefix (longest first); anything else
# gets Config.context_window_default.
_CONTEXT_WINDOWS: Final = (
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-5", 272_000),
    ("gpt-3.5-turbo", 16_385),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
    ("claude-", 200_000),
)
_OPENAI_EMBEDDING_DIMS: Final = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}

log = logging.getLogger(__name__)


class ModelCatalog(Protocol):
    async def list_llm_models(self) -> list[Model]: ...
    async def list_embedding_models(self) -> list[EmbeddingModel]: ...
    def resolve_llm(self, handle: str) -> LlmConfig: ...
    def resolve_embedding(self, handle: str | None) -> EmbeddingConfig: ...


@final
@dataclasses.dataclass(frozen=True)
class Provider:
    name: str  # the handle prefix
    kind: str  # "openai" or "anthropic": which SDK talks to it
    base_url: str
    api_key: str


def configured_providers(config: Config) -> list[Provider]:
    providers = []
    if config.openai_api_key or config.openai_base_url:
        providers.append(
            Provider(
                name="openai",
                kind="openai",
                base_url=config.openai_base_url or OPENAI_BASE_URL_DEFAULT,
                # OpenAI-compatible servers (vLLM, Ollama, llama.cpp) often need no key.
                api_key=config.openai_api_key or "not-needed",
            )
        )
    if config.anthropic_api_key:
        providers.append(
            Provider(
                name="anthropic",
                kind="anthropic",
                base_url=config.anthropic_base_url or ANTHROPIC_BASE_URL_DEFAULT,
                api_key=config.anthropic_api_key,
            )
        )
    return providers


def split_handle(handle: str) -> tuple[str, str]:
    provider, sep, model = handle.partition("/")
    if not sep or not provider or not model:
        raise InvalidInput(f"Model handle must look like 'provider/model', got '{handle}'")
    return provider, model


async def fetch_model_ids(provider: Provider) -> list[str]:
    """The provider's model ids, asked for now (one request, no retries, a short timeout)."""
    if provider.kind == "openai":
        import openai

        async with openai.AsyncOpenAI(
            api_key=provider.api_key,
            base_url=provider.base_url,
            timeout=PROVIDER_LIST_TIMEOUT_S,
            max_retries=0,
        ) as client:
            return sorted([model.id async for model in client.models.list()])
    assert provider.kind == "anthropic", f"unknown provider kind {provider.kind}"
    import anthropic

    async with anthropic.AsyncAnthropic(
        api_key=provider.api_key,
        base_url=provider.base_url,
        timeout=PROVIDER_LIST_TIMEOUT_S,
        max_retries=0,
    ) as client:
        return sorted([model.id async for model in client.models.list()])


@final
class ProviderCatalog:
    def __init__(self, config: Config, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._providers = {p.name: p for p in configured_providers(config)}
        self._cache: dict[str, tuple[float, list[str]]] = {}

    async def _model_ids(self, provider: Provider) -> list[str]:
        now = self._clock.monotonic_s()
        cached = self._cache.get(provider.name)
        if cached is not None and now - cached[0] < MODEL_LIST_CACHE_S:
            return cached[1]
        try:
            ids = await fetch_model_ids(provider)
        except Exception as error:  # any SDK or network failure: list nothing, say why
            log.warning("cannot list models of provider %s: %s", provider.name, error)
            return cached[1] if cached is not None else []
        self._cache[provider.name] = (now, ids)
        return ids

    def _context_window(self, model: str) -> int:
        for prefix, window in _CONTEXT_WINDOWS:
            if model.startswith(prefix):
                return window
        return self._config.context_window_default

    def _llm_config(self, provider: Provider, model: str) -> LlmConfig:
        return LlmConfig(
            model=model,
            model_endpoint_type=provider.kind,
            model_endpoint=provider.base_url,
            context_window=self._context_window(model),
            handle=f"{provider.name}/{model}",
            provider_name=provider.name,
            provider_category="base",
            display_name=model,
            temperature=0.7,
            put_inner_thoughts_in_kwargs=False,
        )

    async def list_llm_models(self) -> list[Model]:
        models = []
        for provider in self._providers.values():
            for model_id in await self._model_ids(provider):
                if provider.kind == "openai" and "embed" in model_id:
                    continue
                config = self._llm_config(provider, model_id)
                models.append(
                    Model(
                        **config.model_dump(),
                        name=model_id,
                        max_context_window=config.context_window,
                        provider_type=provider.kind,
                    )
                )
        return models

    async def list_embedding_models(self) -> list[EmbeddingModel]:
        models = [LOCAL_EMBEDDING]
        provider = self._providers.get("openai")
        if provider is not None:
            for model_id in await self._model_ids(provider):
                dim = _OPENAI_EMBEDDING_DIMS.get(model_id)
                if dim is not None:
                    models.append(
                        EmbeddingModel(
                            name=model_id,
                            display_name=model_id,
                            handle=f"{provider.name}/{model_id}",
                            provider_name=provider.name,
                            provider_type="openai",
                            embedding_endpoint_type="openai",
                            embedding_endpoint=provider.base_url,
                            embedding_model=model_id,
                            embedding_dim=dim,
                        )
                    )
        return models

    def resolve_llm(self, handle: str) -> LlmConfig:
        provider_name, model = split_handle(handle)
        provider = self._providers.get(provider_name)
        if provider is None:
            configured = ", ".join(sorted(self._providers)) or "none"
            raise InvalidInput(
                f"Model handle '{handle}' names provider '{provider_name}', which is not"
                f" configured (configured: {configured}). Set OPENAI_API_KEY / OPENAI_BASE_URL"
                " or ANTHROPIC_API_KEY, or pick a handle from GET /v1/models/."
            )
        return self._llm_config(provider, model)

    def resolve_embedding(self, handle: str | None) -> EmbeddingConfig:
        if handle is None or handle == LOCAL_EMBEDDING.handle:
            return EmbeddingConfig.model_validate(LOCAL_EMBEDDING.model_dump())
        provider_name, model = split_handle(handle)
        provider = self._providers.get(provider_name)
        dim = _OPENAI_EMBEDDING_DIMS.get(model)
        if provider is None or provider.kind != "openai" or dim is None:
            raise InvalidInput(
                f"Embedding handle '{handle}' is not available; see GET /v1/models/embedding"
            )
        return EmbeddingConfig(
            embedding_endpoint_type="openai",
            embedding_endpoint=provider.base_url,
            embedding_model=model,
            embedding_dim=dim,
            handle=handle,
        )

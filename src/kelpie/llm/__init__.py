"""Language-model providers. For now: the catalogue of configured models (OpenAI or any
OpenAI-compatible base URL, and Anthropic) that `/v1/models` lists and agents resolve
their `model` handle against. Imports only env, schemas and errors.
"""

from kelpie.llm._catalog import (
    LOCAL_EMBEDDING,
    ModelCatalog,
    Provider,
    ProviderCatalog,
    configured_providers,
    split_handle,
)
from kelpie.llm._errors import (
    LlmError,
    LlmInvalidResponse,
    LlmProviderFailed,
    LlmRateLimited,
    LlmTimeout,
)

__all__ = [
    "LOCAL_EMBEDDING",
    "LlmError",
    "LlmInvalidResponse",
    "LlmProviderFailed",
    "LlmRateLimited",
    "LlmTimeout",
    "ModelCatalog",
    "Provider",
    "ProviderCatalog",
    "configured_providers",
    "split_handle",
]

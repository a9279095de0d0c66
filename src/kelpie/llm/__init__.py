"""Language-model providers: the catalogue of configured models (OpenAI or any
OpenAI-compatible base URL, and Anthropic) that `/v1/models` lists and agents resolve their
`model` handle against; the `LlmClient` seam with one client per provider SDK; retrying;
the router that picks a client for an LlmConfig; and a scripted model for tests and the
simulator; `MeteredLlm` records calls in the server's metrics. The SDKs are imported on
first use only. Imports only env, schemas, errors and obs.
"""

from kelpie.llm._anthropic import ANTHROPIC_MAX_TOKENS_DEFAULT, AnthropicClient
from kelpie.llm._catalog import (
    LOCAL_EMBEDDING,
    ModelCatalog,
    Provider,
    ProviderCatalog,
    configured_providers,
    fetch_model_ids,
    split_handle,
)
from kelpie.llm._errors import (
    LlmError,
    LlmInvalidResponse,
    LlmProviderFailed,
    LlmRateLimited,
    LlmTimeout,
)
from kelpie.llm._metered import MeteredLlm
from kelpie.llm._openai import OpenAIClient
from kelpie.llm._retry import LLM_ATTEMPTS_MAX, LLM_REQUEST_TIMEOUT_S, RetryingLlm
from kelpie.llm._router import SUPPORTED_ENDPOINT_TYPES, LlmProviders, LlmRouter
from kelpie.llm._scripted import ScriptedLlm, ScriptedProviders, scripted_deltas
from kelpie.llm._types import (
    ChatMessage,
    FinishReason,
    HistoryEncodings,
    LlmClient,
    LlmDelta,
    LlmRequest,
    LlmResponse,
    OnDelta,
    Role,
    ToolCall,
    ToolSpec,
    Usage,
)

__all__ = [
    "ANTHROPIC_MAX_TOKENS_DEFAULT",
    "LLM_ATTEMPTS_MAX",
    "LLM_REQUEST_TIMEOUT_S",
    "LOCAL_EMBEDDING",
    "SUPPORTED_ENDPOINT_TYPES",
    "AnthropicClient",
    "ChatMessage",
    "FinishReason",
    "HistoryEncodings",
    "LlmClient",
    "LlmDelta",
    "LlmError",
    "LlmInvalidResponse",
    "LlmProviderFailed",
    "LlmProviders",
    "LlmRateLimited",
    "LlmRequest",
    "LlmResponse",
    "LlmRouter",
    "LlmTimeout",
    "MeteredLlm",
    "ModelCatalog",
    "OnDelta",
    "OpenAIClient",
    "Provider",
    "ProviderCatalog",
    "RetryingLlm",
    "Role",
    "ScriptedLlm",
    "ScriptedProviders",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "configured_providers",
    "fetch_model_ids",
    "scripted_deltas",
    "split_handle",
]

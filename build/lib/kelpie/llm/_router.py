"""Which client answers an agent's LlmConfig: the provider named by its
`model_endpoint_type`, at its `model_endpoint`, with the API key from Config.

The agent loop asks an `LlmProviders` for its client, so the simulator can substitute
scripted models (`ScriptedProviders`) for the real router.
"""

import logging
from typing import Final, Protocol, final

from kelpie.env import Clock, Config, Entropy
from kelpie.llm._anthropic import AnthropicClient
from kelpie.llm._catalog import Provider, configured_providers
from kelpie.llm._errors import LlmProviderFailed
from kelpie.llm._openai import OpenAIClient
from kelpie.llm._retry import LLM_REQUEST_TIMEOUT_S, RetryingLlm
from kelpie.llm._types import LlmClient
from kelpie.schemas import LlmConfig

# Letta's endpoint types for servers that speak OpenAI's Chat Completions API.
OPENAI_COMPATIBLE_KINDS: Final = frozenset(
    {"openai", "vllm", "ollama", "lmstudio", "lmstudio-openai", "llamacpp", "koboldcpp"}
)
# What a keyless server is sent: the SDKs insist on some key.
# Every model_endpoint_type this router can serve.
SUPPORTED_ENDPOINT_TYPES: Final = OPENAI_COMPATIBLE_KINDS | {"anthropic"}
API_KEY_NONE: Final = "not-needed"

log = logging.getLogger(__name__)

_SdkClient = OpenAIClient | AnthropicClient


class LlmProviders(Protocol):
    def client_for(self, llm: LlmConfig) -> LlmClient:
        """The client for `llm`; raises `LlmProviderFailed` when none can serve it."""
        ...


def _normalised(base_url: str, kind: str) -> str:
    base_url = base_url.rstrip("/")
    # Letta writes Anthropic's endpoint with the version; the SDK adds `/v1` itself.
    if kind == "anthropic":
        base_url = base_url.removesuffix("/v1")
    return base_url


@final
class LlmRouter:
    """Picks and caches the client for each (kind, base URL); each is wrapped in
    `RetryingLlm`. SDK clients hold connection pools: call `aclose()` at shutdown."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        entropy: Entropy,
        *,
        timeout_s: float = LLM_REQUEST_TIMEOUT_S,
    ) -> None:
        self._configured = {provider.kind: provider for provider in configured_providers(config)}
        self._clock = clock
        self._entropy = entropy
        self._timeout_s = timeout_s
        self._clients: dict[tuple[str, str], tuple[_SdkClient, RetryingLlm]] = {}

    def client_for(self, llm: LlmConfig) -> LlmClient:
        provider = self._provider_for(llm)
        key = (provider.kind, provider.base_url)
        cached = self._clients.get(key)
        if cached is not None:
            return cached[1]
        if provider.api_key == API_KEY_NONE:
            log.info("calling %s %s without an API key", provider.kind, provider.base_url)
        client: _SdkClient
        if provider.kind == "anthropic":
            client = AnthropicClient(provider, timeout_s=self._timeout_s)
        else:
            client = OpenAIClient(provider, timeout_s=self._timeout_s)
        entropy = self._entropy.fork(f"llm-retry/{provider.kind}/{provider.base_url}")
        retrying = RetryingLlm(client, self._clock, entropy)
        self._clients[key] = (client, retrying)
        return retrying

    async def aclose(self) -> None:
        clients = [client for client, _ in self._clients.values()]
        self._clients.clear()
        for client in clients:
            await client.aclose()

    def _provider_for(self, llm: LlmConfig) -> Provider:
        """The provider to call, keyed only where the URL is the configured one: an agent's
        `model_endpoint` comes from API clients, and must not draw our key to another host."""
        endpoint_type = llm.model_endpoint_type
        if endpoint_type in OPENAI_COMPATIBLE_KINDS:
            kind = "openai"
        elif endpoint_type == "anthropic":
            kind = "anthropic"
        else:
            supported = ", ".join(sorted(OPENAI_COMPATIBLE_KINDS | {"anthropic"}))
            raise LlmProviderFailed(
                f"model_endpoint_type '{endpoint_type}' is not supported (supported: {supported})",
                retryable=False,
            )
        configured = self._configured.get(kind)
        if configured is None and (kind == "anthropic" or llm.model_endpoint is None):
            setting = (
                "ANTHROPIC_API_KEY" if kind == "anthropic" else "OPENAI_API_KEY or OPENAI_BASE_URL"
            )
            raise LlmProviderFailed(
                f"model '{llm.handle or llm.model}' needs a {kind} provider, and none is"
                f" configured: set {setting}",
                retryable=False,
            )
        base_url = llm.model_endpoint or (configured.base_url if configured else "")
        base_url = _normalised(base_url, kind)
        api_key = API_KEY_NONE
        if configured is not None and _normalised(configured.base_url, kind) == base_url:
            api_key = configured.api_key
        name = configured.name if configured is not None else kind
        return Provider(name=name, kind=kind, base_url=base_url, api_key=api_key)

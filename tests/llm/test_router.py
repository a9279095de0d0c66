"""LlmRouter: the client for an LlmConfig, cached per provider and base URL, and keyed only
for the configured endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from kelpie.env import Config, Entropy
from kelpie.llm import (
    AnthropicClient,
    LlmClient,
    LlmProviderFailed,
    LlmProviders,
    LlmResponse,
    LlmRouter,
    OpenAIClient,
    RetryingLlm,
    ScriptedProviders,
    Usage,
)

from ._support import API_KEY, FakeClock, FakeLlm, chat_request, llm_config

ANTHROPIC_KEY = "sk-ant-test"
T = TypeVar("T")


@pytest.fixture
def config(fake_llm: FakeLlm) -> Config:
    return Config(
        openai_api_key=API_KEY,
        openai_base_url=fake_llm.openai_url,
        anthropic_api_key=ANTHROPIC_KEY,
        anthropic_base_url=fake_llm.anthropic_url,
    )


@pytest.fixture
def router(config: Config) -> LlmRouter:
    """A router whose clients are only looked at, never used: nothing to close."""
    return LlmRouter(config, FakeClock(), Entropy(1))


def _with_router(config: Config, use: Callable[[LlmRouter], Awaitable[T]]) -> T:
    """Runs `use` on a fresh router, closed after, all on one event loop: SDK clients keep
    connections that belong to the loop they were first used on."""

    async def run() -> T:
        router = LlmRouter(config, FakeClock(), Entropy(1))
        try:
            return await use(router)
        finally:
            await router.aclose()

    return asyncio.run(run())


def _inner(client: LlmClient) -> LlmClient:
    assert isinstance(client, RetryingLlm)
    return client.inner


async def _ask(router: LlmRouter, **config: Any) -> str | None:
    client = router.client_for(llm_config(**config))
    return (await client.complete(chat_request(**config))).content


def test_openai_config_gets_a_retrying_openai_client(router: LlmRouter, fake_llm: FakeLlm) -> None:
    client = router.client_for(llm_config(model_endpoint=fake_llm.openai_url))

    inner = _inner(client)
    assert isinstance(inner, OpenAIClient)
    assert inner.base_url == fake_llm.openai_url


def test_anthropic_config_gets_an_anthropic_client(router: LlmRouter, fake_llm: FakeLlm) -> None:
    inner = _inner(router.client_for(llm_config(model_endpoint_type="anthropic")))

    assert isinstance(inner, AnthropicClient)
    assert inner.base_url == fake_llm.anthropic_url


def test_clients_are_cached_per_kind_and_base_url(router: LlmRouter, fake_llm: FakeLlm) -> None:
    first = router.client_for(llm_config())
    again = router.client_for(llm_config(model_endpoint=fake_llm.openai_url + "/"))
    vllm = router.client_for(llm_config(model_endpoint_type="vllm"))
    anthropic = router.client_for(llm_config(model_endpoint_type="anthropic"))
    # Letta writes Anthropic's endpoint with `/v1`; the SDK adds it itself.
    anthropic_v1 = router.client_for(
        llm_config(model_endpoint_type="anthropic", model_endpoint=fake_llm.anthropic_url + "/v1")
    )

    assert first is again
    assert first is vllm
    assert anthropic is anthropic_v1
    assert anthropic is not first


@pytest.mark.parametrize("kind", ["openai", "ollama", "lmstudio", "llamacpp"])
def test_openai_compatible_kinds_answer_end_to_end(config: Config, kind: str) -> None:
    assert _with_router(config, lambda router: _ask(router, model_endpoint_type=kind)) == "OK"


def test_anthropic_answers_end_to_end(config: Config, fake_llm: FakeLlm) -> None:
    content = _with_router(config, lambda router: _ask(router, model_endpoint_type="anthropic"))

    assert content == "OK"
    request = fake_llm.requests()[-1]
    assert request["path"] == "/v1/messages"
    assert request["headers"]["authorization"] == f"Bearer {ANTHROPIC_KEY}"


def test_configured_key_goes_only_to_the_configured_endpoint(
    config: Config, fake_llm: FakeLlm
) -> None:
    # The same server under another name: an endpoint an API client chose.
    elsewhere = fake_llm.openai_url.replace("127.0.0.1", "localhost")

    async def ask_both(router: LlmRouter) -> None:
        await _ask(router)
        await _ask(router, model_endpoint=elsewhere)

    _with_router(config, ask_both)

    keys = [request["headers"]["authorization"] for request in fake_llm.requests()]
    assert keys == [f"Bearer {API_KEY}", "Bearer not-needed"]


def test_unknown_endpoint_type_is_refused(router: LlmRouter) -> None:
    with pytest.raises(LlmProviderFailed) as caught:
        router.client_for(llm_config(model_endpoint_type="carrier-pigeon"))

    assert not caught.value.retryable
    assert "carrier-pigeon" in caught.value.detail


def test_unconfigured_anthropic_is_refused() -> None:
    router = LlmRouter(Config(openai_api_key=API_KEY), FakeClock(), Entropy(1))

    with pytest.raises(LlmProviderFailed) as caught:
        router.client_for(llm_config(model_endpoint_type="anthropic"))

    assert not caught.value.retryable
    assert "ANTHROPIC_API_KEY" in caught.value.detail


def test_unconfigured_openai_without_endpoint_is_refused() -> None:
    router = LlmRouter(Config(), FakeClock(), Entropy(1))

    with pytest.raises(LlmProviderFailed) as caught:
        router.client_for(llm_config())

    assert not caught.value.retryable
    assert "OPENAI_API_KEY" in caught.value.detail


def test_local_server_needs_no_configuration(fake_llm: FakeLlm) -> None:
    content = _with_router(
        Config(),
        lambda router: _ask(
            router, model_endpoint_type="ollama", model_endpoint=fake_llm.openai_url
        ),
    )

    assert content == "OK"
    assert fake_llm.requests()[-1]["headers"]["authorization"] == "Bearer not-needed"


def test_close_forgets_the_clients(config: Config) -> None:
    async def reopen(router: LlmRouter) -> bool:
        first = router.client_for(llm_config())
        await router.aclose()
        return router.client_for(llm_config()) is first

    assert _with_router(config, reopen) is False


def test_router_and_scripted_providers_satisfy_the_protocol(router: LlmRouter) -> None:
    # The real assertion is mypy's: both are assignable to the protocol.
    scripted = ScriptedProviders(lambda _: LlmResponse("Hi.", (), "stop", Usage()))
    providers: list[LlmProviders] = [router, scripted]

    assert all(callable(providers.client_for) for providers in providers)

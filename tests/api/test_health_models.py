"""Health and model catalogue (letta-api.md §1.1, §2.9)."""

from __future__ import annotations

import httpx
import pytest
from letta_client import Letta

EMBEDDING_HANDLE_DEFAULT = "kelpie/all-minilm-l6-v2"
EMBEDDING_DIM_DEFAULT = 384


def test_health_reports_ok_and_version(client: Letta) -> None:
    health = client.health()

    assert health.status == "ok"
    assert isinstance(health.version, str)
    assert health.version


@pytest.mark.parametrize("path", ["/v1/health", "/v1/health/"])
def test_health_answers_both_slash_forms_without_redirect(http: httpx.Client, path: str) -> None:
    response = http.get(path)

    assert response.status_code == 200, response.text
    assert not response.is_redirect
    assert response.history == []
    body = response.json()
    assert body["status"] == "ok"
    assert isinstance(body["version"], str)


class TestModelsList:
    def test_lists_the_openai_model_of_the_configured_provider(self, client: Letta) -> None:
        models = client.models.list()

        by_handle = {model.handle: model for model in models}
        assert "openai/gpt-4o-mini" in by_handle, sorted(str(h) for h in by_handle)
        model = by_handle["openai/gpt-4o-mini"]
        assert model.provider_type == "openai"
        assert model.name == "gpt-4o-mini"
        assert model.model == "gpt-4o-mini"
        assert model.api_model_endpoint_type == "openai"
        assert isinstance(model.context_window, int)
        assert model.context_window > 0
        assert isinstance(model.max_context_window, int)
        assert model.max_context_window >= model.context_window

    def test_every_model_has_a_provider_slash_name_handle(self, client: Letta) -> None:
        models = client.models.list()

        assert models, "no models listed"
        for model in models:
            assert model.handle is not None
            provider, _, name = model.handle.partition("/")
            assert provider
            assert name == model.name

    def test_embedding_models_are_not_offered_as_llms(self, client: Letta) -> None:
        handles = {model.handle for model in client.models.list()}

        assert "openai/text-embedding-3-small" not in handles

    def test_answers_both_slash_forms_without_redirect(self, http: httpx.Client) -> None:
        with_slash = http.get("/v1/models/")
        without_slash = http.get("/v1/models")

        assert with_slash.status_code == 200, with_slash.text
        assert without_slash.status_code == 200, without_slash.text
        assert with_slash.json() == without_slash.json()


class TestEmbeddingModelsList:
    def test_returns_a_list_with_the_local_default(self, client: Letta) -> None:
        embeddings = client.models.embeddings.list()

        assert isinstance(embeddings, list)
        by_handle = {model.handle: model for model in embeddings}
        assert EMBEDDING_HANDLE_DEFAULT in by_handle, sorted(str(h) for h in by_handle)
        default = by_handle[EMBEDDING_HANDLE_DEFAULT]
        assert default.embedding_dim == EMBEDDING_DIM_DEFAULT
        assert isinstance(default.embedding_model, str)
        assert default.embedding_model

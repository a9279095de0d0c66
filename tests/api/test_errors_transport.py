"""Error statuses and bodies, request validation, and transport conventions
(letta-api.md §0, §3.7). Every rejected request must leave the server's state unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pydantic
import pytest
from letta_client import AuthenticationError, Letta, NotFoundError, UnprocessableEntityError
from letta_client.types import AgentState, BlockResponse, LlmConfig, Tool
from letta_client.types.agent_state import Memory
from letta_client.types.embedding_model import EmbeddingModel
from letta_client.types.model import Model

from ._support import (
    MODEL,
    KelpieStarter,
    assert_every_route_refused,
    error_detail,
    new_agent,
    unique,
)

PAGE_ALL = 1_000
UNKNOWN_AGENT_ID = "agent-00000000-0000-4000-8000-000000000000"
UNKNOWN_BLOCK_ID = "block-00000000-0000-4000-8000-000000000000"
UNKNOWN_TOOL_ID = "tool-00000000-0000-4000-8000-000000000000"


def agent_count(http: httpx.Client) -> int:
    response = http.get("/v1/agents/", params={"limit": PAGE_ALL})
    assert response.status_code == 200, response.text
    agents = response.json()
    assert isinstance(agents, list)
    assert len(agents) < PAGE_ALL, "too many agents to count in one page"
    return len(agents)


def assert_json_error(response: httpx.Response, status: int) -> object:
    """Checks the status and that the body is JSON with a `detail`; returns the detail."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert "detail" in body, body
    return body["detail"]


class TestBlockLimit:
    def test_create_over_limit_is_422_and_creates_nothing(self, client: Letta) -> None:
        before = len(client.blocks.list(label="x", limit=PAGE_ALL).items)

        with pytest.raises(UnprocessableEntityError) as caught:
            client.blocks.create(label="x", value="testing testing testing", limit=10)

        assert caught.value.status_code == 422
        assert "Exceeds 10 character limit" in str(error_detail(caught.value))
        assert len(client.blocks.list(label="x", limit=PAGE_ALL).items) == before

    def test_agent_memory_block_over_limit_is_422_and_creates_no_agent(
        self, client: Letta, http: httpx.Client
    ) -> None:
        name = unique("over-limit")
        count = agent_count(http)

        with pytest.raises(UnprocessableEntityError) as caught:
            client.agents.create(
                name=name,
                model=MODEL,
                memory_blocks=[{"label": "human", "value": "testing testing testing", "limit": 10}],
            )

        assert "Exceeds 10 character limit" in str(error_detail(caught.value))
        assert client.agents.list(name=name).items == []
        assert agent_count(http) == count


class TestMalformedIds:
    @pytest.mark.parametrize(
        ("path", "pattern"),
        [
            ("/v1/agents/not-an-id", "agent-{uuid4}"),
            ("/v1/agents/agent-123", "agent-{uuid4}"),
            ("/v1/blocks/not-a-block", "block-{uuid4}"),
            ("/v1/tools/not-a-tool", "tool-{uuid4}"),
            ("/v1/agents/not-an-id/core-memory/blocks", "agent-{uuid4}"),
            ("/v1/agents/not-an-id/tools", "agent-{uuid4}"),
        ],
    )
    def test_malformed_path_id_is_422_naming_the_pattern(
        self, http: httpx.Client, path: str, pattern: str
    ) -> None:
        detail = assert_json_error(http.get(path), 422)

        assert pattern in str(detail)

    def test_sdk_sees_unprocessable_entity_for_a_malformed_agent_id(self, client: Letta) -> None:
        with pytest.raises(UnprocessableEntityError) as caught:
            client.agents.retrieve("not-an-id")

        assert "agent-{uuid4}" in str(error_detail(caught.value))

    def test_wrong_prefix_is_422(self, http: httpx.Client) -> None:
        detail = assert_json_error(http.get(f"/v1/agents/{UNKNOWN_BLOCK_ID}"), 422)

        assert "agent-{uuid4}" in str(detail)


class TestUnknownIds:
    def test_unknown_agent_is_404(self, client: Letta) -> None:
        with pytest.raises(NotFoundError) as caught:
            client.agents.retrieve(UNKNOWN_AGENT_ID)

        assert caught.value.status_code == 404
        assert error_detail(caught.value)

    def test_delete_unknown_agent_is_404(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.agents.delete(UNKNOWN_AGENT_ID)

    def test_unknown_block_is_404(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.blocks.retrieve(UNKNOWN_BLOCK_ID)

    def test_unknown_tool_is_404(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.tools.retrieve(UNKNOWN_TOOL_ID)

    def test_create_with_unknown_block_id_is_404_and_creates_nothing(
        self, client: Letta, http: httpx.Client
    ) -> None:
        name = unique("bad-block")
        count = agent_count(http)

        with pytest.raises(NotFoundError):
            client.agents.create(name=name, model=MODEL, block_ids=[UNKNOWN_BLOCK_ID])

        assert client.agents.list(name=name).items == []
        assert agent_count(http) == count

    def test_create_with_unknown_tool_id_is_404_and_creates_nothing(
        self, client: Letta, http: httpx.Client
    ) -> None:
        name = unique("bad-tool")
        count = agent_count(http)

        with pytest.raises(NotFoundError):
            client.agents.create(name=name, model=MODEL, tool_ids=[UNKNOWN_TOOL_ID])

        assert client.agents.list(name=name).items == []
        assert agent_count(http) == count

    def test_update_with_unknown_block_id_is_404_and_changes_nothing(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}])

        with pytest.raises(NotFoundError):
            client.agents.update(agent.id, block_ids=[UNKNOWN_BLOCK_ID])

        blocks = client.agents.retrieve(agent.id, include=["agent.blocks"]).blocks
        assert [(b.label, b.value) for b in blocks] == [("human", "Ada")]


class TestRequestValidation:
    @pytest.mark.parametrize(
        "body",
        [
            {"name": 5},
            {"tags": "x"},
            {"memory_blocks": [{"label": "human"}]},
            {"include_base_tools": "sometimes"},
            {"metadata": ["not", "an", "object"]},
        ],
        ids=["name-int", "tags-str", "block-without-value", "bool-str", "metadata-list"],
    )
    def test_wrong_types_are_422_with_a_string_detail(
        self, http: httpx.Client, body: dict[str, object]
    ) -> None:
        count = agent_count(http)

        detail = assert_json_error(http.post("/v1/agents/", json={"model": MODEL, **body}), 422)

        assert isinstance(detail, str)
        assert detail
        assert agent_count(http) == count

    def test_unknown_fields_are_ignored(self, client: Letta, http: httpx.Client) -> None:
        name = unique("extras")

        response = http.post(
            "/v1/agents/",
            json={
                "name": name,
                "model": MODEL,
                "isolated_block_labels": [],
                "some_future_field": {"nested": True},
            },
        )

        assert response.status_code == 200, response.text
        created = response.json()
        assert created["name"] == name
        assert "isolated_block_labels" not in created
        assert [agent.id for agent in client.agents.list(name=name).items] == [created["id"]]

    def test_unknown_fields_are_ignored_on_update(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)

        response = http.patch(
            f"/v1/agents/{agent.id}", json={"description": "patched", "unheard_of": 1}
        )

        assert response.status_code == 200, response.text
        assert client.agents.retrieve(agent.id).description == "patched"

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/v1/agents/"),
            ("POST", "/v1/blocks/"),
            ("POST", "/v1/tools/"),
        ],
    )
    def test_invalid_json_is_422(self, http: httpx.Client, method: str, path: str) -> None:
        count = agent_count(http)

        response = http.request(
            method, path, content=b'{"name": "half', headers={"Content-Type": "application/json"}
        )

        assert_json_error(response, 422)
        assert agent_count(http) == count

    def test_invalid_json_on_patch_is_422_and_changes_nothing(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client)

        response = http.patch(
            f"/v1/agents/{agent.id}",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )

        assert_json_error(response, 422)
        assert client.agents.retrieve(agent.id).name == agent.name

    def test_empty_body_is_422(self, http: httpx.Client) -> None:
        response = http.post(
            "/v1/blocks/", content=b"", headers={"Content-Type": "application/json"}
        )

        assert_json_error(response, 422)

    def test_block_without_value_is_422(self, http: httpx.Client) -> None:
        response = http.post("/v1/blocks/", json={"label": unique("no-value")})

        assert_json_error(response, 422)


class TestErrorBodies:
    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", f"/v1/agents/{UNKNOWN_AGENT_ID}", 404),
            ("PATCH", f"/v1/agents/{UNKNOWN_AGENT_ID}", 404),
            ("DELETE", f"/v1/agents/{UNKNOWN_AGENT_ID}", 404),
            ("GET", f"/v1/agents/{UNKNOWN_AGENT_ID}/core-memory/blocks", 404),
            ("GET", f"/v1/agents/{UNKNOWN_AGENT_ID}/core-memory/blocks/human", 404),
            ("GET", f"/v1/blocks/{UNKNOWN_BLOCK_ID}", 404),
            ("GET", f"/v1/tools/{UNKNOWN_TOOL_ID}", 404),
            ("GET", "/v1/agents/not-an-id", 422),
            ("GET", "/v1/no-such-resource", 404),
        ],
    )
    def test_every_error_body_is_json_with_detail(
        self, http: httpx.Client, method: str, path: str, status: int
    ) -> None:
        response = http.request(method, path, json={} if method == "PATCH" else None)

        assert_json_error(response, status)

    def test_unsupported_method_is_405_with_detail(self, http: httpx.Client) -> None:
        response = http.request("PUT", f"/v1/agents/{UNKNOWN_AGENT_ID}/core-memory/blocks")

        assert_json_error(response, 405)


class TestTransport:
    @pytest.mark.parametrize("collection", ["agents", "blocks", "tools", "models", "tags"])
    def test_collection_roots_answer_both_slash_forms(
        self, http: httpx.Client, collection: str
    ) -> None:
        with_slash = http.get(f"/v1/{collection}/")
        without_slash = http.get(f"/v1/{collection}")

        for response in (with_slash, without_slash):
            assert response.status_code == 200, f"{response.url}: {response.text}"
            assert not response.is_redirect
            assert isinstance(response.json(), list)

    def test_requests_without_auth_are_accepted(self, http: httpx.Client) -> None:
        response = http.get("/v1/agents/", params={"limit": 1})

        assert response.status_code == 200, response.text

    def test_any_bearer_token_is_accepted(self, http: httpx.Client) -> None:
        response = http.get(
            "/v1/agents/", params={"limit": 1}, headers={"Authorization": "Bearer anything"}
        )

        assert response.status_code == 200, response.text

    def test_repeated_query_keys_are_arrays(self, client: Letta, http: httpx.Client) -> None:
        tag_a, tag_b = unique("qa"), unique("qb")
        first = new_agent(client, tags=[tag_a])
        second = new_agent(client, tags=[tag_b])

        response = http.get("/v1/agents/", params=[("tags", tag_a), ("tags", tag_b)])

        assert response.status_code == 200, response.text
        assert sorted(agent["id"] for agent in response.json()) == sorted([first.id, second.id])

    def test_datetimes_carry_a_timezone(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)

        created_at = http.get(f"/v1/agents/{agent.id}").json()["created_at"]

        assert isinstance(created_at, str)
        assert created_at.endswith("Z") or created_at[-6] in "+-", created_at

    def test_agent_metadata_key_has_no_underscore(self, client: Letta, http: httpx.Client) -> None:
        agent = client.agents.create(name=unique("meta"), model=MODEL, metadata={"k": "v"})

        body = http.get(f"/v1/agents/{agent.id}").json()

        assert body["metadata"] == {"k": "v"}


def required_fields(model: type[pydantic.BaseModel]) -> set[str]:
    """The JSON keys the SDK's model of a response marks as required."""
    return {
        field.alias or name for name, field in model.model_fields.items() if field.is_required()
    }


def missing_fields(model: type[pydantic.BaseModel], body: object) -> set[str]:
    assert isinstance(body, dict), body
    return required_fields(model) - body.keys()


@pytest.fixture
def strict_client(kelpie_server: str) -> Iterator[Letta]:
    """The SDK with response validation on: every response must parse into the SDK's types."""
    letta = Letta(
        base_url=kelpie_server,
        api_key="sk-kelpie-test",
        max_retries=0,
        _strict_response_validation=True,
    )
    try:
        yield letta
    finally:
        letta.close()


class TestResponseShapes:
    """letta-api.md §2: emit every field the SDK marks required, with the SDK's types."""

    def test_agent_has_every_required_field(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Ada"}])

        for include in ([], ["agent.blocks", "agent.tools", "agent.tags"]):
            body = http.get(f"/v1/agents/{agent.id}", params={"include": include}).json()
            assert missing_fields(AgentState, body) == set()
            assert missing_fields(LlmConfig, body["llm_config"]) == set()
            assert missing_fields(Memory, body["memory"]) == set()
        listed = http.get("/v1/agents/", params={"name": agent.name}).json()
        assert [missing_fields(AgentState, item) for item in listed] == [set()]

    def test_block_and_tool_have_every_required_field(
        self, client: Letta, http: httpx.Client
    ) -> None:
        block = client.blocks.create(label=unique("shape"), value="v")
        tool = client.tools.list(name="web_search").items[0]

        assert missing_fields(BlockResponse, http.get(f"/v1/blocks/{block.id}").json()) == set()
        assert missing_fields(Tool, http.get(f"/v1/tools/{tool.id}").json()) == set()

    def test_models_have_every_required_field(self, http: httpx.Client) -> None:
        models = http.get("/v1/models/").json()
        embeddings = http.get("/v1/models/embedding").json()

        assert models
        assert embeddings
        assert [missing_fields(Model, item) for item in models] == [set()] * len(models)
        assert [missing_fields(EmbeddingModel, item) for item in embeddings] == [set()] * len(
            embeddings
        )

    def test_tool_metadata_uses_the_underscored_key(
        self, client: Letta, http: httpx.Client
    ) -> None:
        tool = client.tools.upsert(
            source_code='def shape_probe(x: int) -> int:\n    """Probe.\n\n    Args:\n'
            '        x (int): A number.\n    """\n    return x\n'
        )

        client.tools.update(tool.id, metadata={"origin": "test"})

        body = http.get(f"/v1/tools/{tool.id}").json()
        assert body["metadata_"] == {"origin": "test"}
        assert client.tools.retrieve(tool.id).metadata == {"origin": "test"}


class TestStrictSdkValidation:
    """Every response parses under the SDK's strict validation (its own types, enums and all),
    not just the lenient parsing it does by default."""

    def test_health_and_models(self, strict_client: Letta) -> None:
        assert strict_client.health().status == "ok"
        assert strict_client.models.list()

    def test_embedding_models(self, strict_client: Letta) -> None:
        assert strict_client.models.embeddings.list()

    def test_agent_create_retrieve_list_update(self, strict_client: Letta) -> None:
        tag = unique("strict")
        block = strict_client.blocks.create(label=unique("strict"), value="v")

        agent = strict_client.agents.create(
            name=unique("strict"),
            model=MODEL,
            memory_blocks=[{"label": "human", "value": "Ada"}],
            block_ids=[block.id],
            tags=[tag],
            agent_type="memgpt_agent",
        )
        bare = strict_client.agents.retrieve(agent.id)
        full = strict_client.agents.retrieve(
            agent.id, include=["agent.blocks", "agent.tools", "agent.tags", "agent.sources"]
        )
        listed = strict_client.agents.list(
            tags=[tag], include=["agent.blocks", "agent.tools", "agent.tags", "agent.sources"]
        )
        updated = strict_client.agents.update(agent.id, description="strict")

        assert bare.id == agent.id
        assert {b.label for b in full.blocks} == {"human", block.label}
        assert full.tools
        assert [a.id for a in listed.items] == [agent.id]
        assert updated.description == "strict"

    def test_core_memory_and_agent_tools(self, strict_client: Letta) -> None:
        agent = strict_client.agents.create(
            name=unique("strict"), model=MODEL, memory_blocks=[{"label": "human", "value": "Ada"}]
        )

        listed = strict_client.agents.blocks.list(agent.id)
        fetched = strict_client.agents.blocks.retrieve("human", agent_id=agent.id)
        updated = strict_client.agents.blocks.update("human", agent_id=agent.id, value="Ada L.")
        tools = strict_client.agents.tools.list(agent.id)

        assert [b.label for b in listed.items] == ["human"]
        assert fetched.value == "Ada"
        assert updated.value == "Ada L."
        assert tools.items

    def test_blocks(self, strict_client: Letta) -> None:
        block = strict_client.blocks.create(label=unique("strict"), value="v")
        strict_client.agents.create(name=unique("strict"), model=MODEL, block_ids=[block.id])

        assert strict_client.blocks.retrieve(block.id).value == "v"
        assert len(strict_client.blocks.list(label=str(block.label)).items) == 1
        assert len(strict_client.blocks.agents.list(block.id).items) == 1
        assert strict_client.blocks.update(block.id, value="w").value == "w"

    def test_tools_and_tags(self, strict_client: Letta) -> None:
        strict_client.agents.create(name=unique("strict"), model=MODEL, tags=[unique("strict")])

        assert strict_client.tools.list(limit=100).items
        assert strict_client.tags.list()


SERVER_PASSWORD = "kelpie-test-password"


@pytest.fixture(scope="module")
def password_server(kelpie_launcher: KelpieStarter) -> str:
    """A second server in Letta's password mode (letta-api.md §0, Auth)."""
    return kelpie_launcher.start({"LETTA_SERVER_PASSWORD": SERVER_PASSWORD})


@pytest.fixture
def password_http(password_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=password_server, follow_redirects=False, timeout=30) as raw:
        yield raw


class TestPasswordMode:
    @pytest.mark.parametrize("path", ["/v1/health", "/v1/health/"])
    def test_health_needs_no_password(self, password_http: httpx.Client, path: str) -> None:
        response = password_http.get(path)

        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer wrong"}, {"X-BARE-PASSWORD": "password wrong"}],
        ids=["none", "wrong-bearer", "wrong-bare-password"],
    )
    def test_missing_or_wrong_password_is_401(
        self, password_http: httpx.Client, headers: dict[str, str]
    ) -> None:
        response = password_http.get("/v1/agents/", headers=headers)

        assert assert_json_error(response, 401) == "Unauthorized"

    @pytest.mark.parametrize(
        "headers",
        [
            {"Authorization": f"Bearer {SERVER_PASSWORD}"},
            {"X-BARE-PASSWORD": f"password {SERVER_PASSWORD}"},
        ],
        ids=["bearer", "bare-password"],
    )
    def test_right_password_is_accepted(
        self, password_http: httpx.Client, headers: dict[str, str]
    ) -> None:
        response = password_http.get("/v1/agents/", headers=headers)

        assert response.status_code == 200, response.text
        assert isinstance(response.json(), list)

    def test_every_route_but_health_needs_the_password(self, password_http: httpx.Client) -> None:
        assert_every_route_refused(password_http, {"Authorization": f"Bearer {SERVER_PASSWORD}"})

    def test_the_mcp_endpoint_needs_the_password(self, password_http: httpx.Client) -> None:
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        accept = {"Accept": "application/json, text/event-stream"}

        refused = password_http.post("/v1/mcp", json=initialize, headers=accept)
        admitted = password_http.post(
            "/v1/mcp",
            json=initialize,
            headers={**accept, "Authorization": f"Bearer {SERVER_PASSWORD}"},
        )

        assert refused.status_code == 401
        assert admitted.status_code != 401, admitted.text

    def test_sdk_with_the_password_as_api_key_works(self, password_server: str) -> None:
        with Letta(base_url=password_server, api_key=SERVER_PASSWORD, max_retries=0) as letta:
            agent = letta.agents.create(name=unique("secure"), model=MODEL)

            assert letta.agents.retrieve(agent.id).id == agent.id

    def test_sdk_with_a_wrong_api_key_is_refused(self, password_server: str) -> None:
        with (
            Letta(base_url=password_server, api_key="wrong", max_retries=0) as letta,
            pytest.raises(AuthenticationError),
        ):
            letta.agents.list()


class TestFuzzFindings:
    """Bodies schemathesis found answered with a 5xx; each must be a clean answer."""

    def test_patch_agent_with_null_message_ids_keeps_them(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client)
        response = http.patch(f"/v1/agents/{agent.id}", json={"name": "n", "message_ids": None})
        assert response.status_code == 200, response.text
        assert response.json()["message_ids"] == agent.message_ids

    def test_llm_config_with_an_unknown_endpoint_type_is_refused(self, http: httpx.Client) -> None:
        llm_config = {"model": "m", "model_endpoint_type": "", "context_window": 1000}
        response = http.post("/v1/agents/", json={"llm_config": llm_config})
        assert response.status_code == 400
        assert "model_endpoint_type" in response.json()["detail"]

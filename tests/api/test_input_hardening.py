"""Inputs that answered 5xx, or were stored when they should not be (issues 14 and 15): lone
surrogates and non-finite numbers anywhere in a JSON body, unbounded context windows,
control characters in identifiers, out-of-range history sequence numbers, and HEAD.

The surrogate and integer tests walk the server's own OpenAPI document, so a new route,
body or field is covered without being listed here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import httpx
import pytest
from letta_client import Letta

from ._support import MODEL, new_agent, unique

SURROGATE: Final = "\ud800"
SURROGATE_DETAIL: Final = "String contains a lone surrogate (U+D800), which is not valid Unicode"
KEY: Final = object()  # a path's last step: the surrogate is a key of the object there
JSON_HEADERS: Final = {"Content-Type": "application/json"}
PAGE_ALL: Final = 1_000
CONTEXT_WINDOW_TOKENS_MAX: Final = 10_000_000
SCHEMA_DEPTH_MAX: Final = 10
# Well-formed ids nothing has: path parameters the walks do not create objects for.
UNKNOWN_IDS: Final = {
    "run_id": "run-00000000-0000-4000-8000-000000000000",
    "step_id": "step-00000000-0000-4000-8000-000000000000",
    "message_id": "message-00000000-0000-4000-8000-000000000000",
    "passage_id": "passage-00000000-0000-4000-8000-000000000000",
    "memory_id": "passage-00000000-0000-4000-8000-000000000000",
    "mcp_server_id": "mcp_server-00000000-0000-4000-8000-000000000000",
    "archive_id": "archive-00000000-0000-4000-8000-000000000000",
    "tool_id": "tool-00000000-0000-4000-8000-000000000000",
    "conversation_id": "conv-00000000-0000-4000-8000-000000000000",
    "server_name": "no-such-server",
    "tool_name": "send_message",
    "block_label": "human",
    "key": "k",
    "path": "notes.txt",
    "seq": "1",
}
UNKNOWN_BLOCK_ID: Final = "block-00000000-0000-4000-8000-000000000000"

Step = str | int | object
Path = tuple[Step, ...]


def resolve(schema: Mapping[str, Any], components: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def string_paths(
    schema: Mapping[str, Any],
    components: Mapping[str, Any],
    path: Path = (),
    seen: frozenset[str] = frozenset(),
) -> Iterator[Path]:
    """Every place in a body of this schema where a string can go (an `Any` counts, and
    so does each free-form object's keys), as paths of keys and list indexes."""
    if len(path) > SCHEMA_DEPTH_MAX:
        return
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in seen:
            return
        seen = seen | {ref}
        schema = resolve(schema, components)
    variants = [*schema.get("anyOf", ()), *schema.get("oneOf", ()), *schema.get("allOf", ())]
    for variant in variants:
        yield from string_paths(variant, components, path, seen)
    kind = schema.get("type")
    if kind == "string":
        yield path
    elif kind == "array":
        yield from string_paths(schema.get("items", {}), components, (*path, 0), seen)
    elif kind == "object" or "properties" in schema:
        for name, field in schema.get("properties", {}).items():
            yield from string_paths(field, components, (*path, name), seen)
        extra = schema.get("additionalProperties", "properties" not in schema)
        if extra is not False:
            yield (*path, KEY)
            yield from string_paths(
                extra if extra is not True else {}, components, (*path, "k"), seen
            )
    elif kind is None and not variants and "enum" not in schema and "const" not in schema:
        yield path  # any JSON value


def body_at(path: Path, leaf: object) -> object:
    """The smallest body with `leaf` at `path` (a surrogate key when the path ends in KEY)."""
    if not path:
        return leaf
    step, rest = path[0], path[1:]
    if step is KEY:
        return {SURROGATE: "v"}
    if isinstance(step, int):
        return [body_at(rest, leaf)]
    assert isinstance(step, str)
    return {step: body_at(rest, leaf)}


def where(path: Path) -> str:
    steps = [str(step) for step in path if step is not KEY]
    return ".".join(steps) or "body"


def concrete(path: str, ids: Mapping[str, str]) -> str:
    return re.sub(r"\{([^}]+)\}", lambda found: ids.get(found[1], "x"), path)


def json_bodies(openapi: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """Every operation that takes a JSON body: method, path and the body's schema."""
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                yield method.upper(), path, content["application/json"]["schema"]


def count(http: httpx.Client, path: str, **params: Any) -> int:
    response = http.get(path, params={"limit": PAGE_ALL, **params})
    assert response.status_code == 200, response.text
    items = response.json()
    assert isinstance(items, list)
    assert len(items) < PAGE_ALL
    return len(items)


def state(http: httpx.Client, agent_id: str, block_id: str) -> dict[str, object]:
    """What a rejected request must leave as it was."""
    include = ["agent.blocks", "agent.tools", "agent.tags", "agent.secrets"]
    agent = http.get(f"/v1/agents/{agent_id}", params={"include": include})
    assert agent.status_code == 200, agent.text
    return {
        "agent": agent.json(),
        "block": http.get(f"/v1/blocks/{block_id}").json(),
        "agents": count(http, "/v1/agents/"),
        "blocks": count(http, "/v1/blocks/"),
        "tools": count(http, "/v1/tools/"),
        "runs": count(http, "/v1/runs/", agent_id=agent_id),
        "conversations": count(http, "/v1/conversations/", agent_id=agent_id),
        "passages": count(http, f"/v1/agents/{agent_id}/archival-memory"),
        "messages": count(http, f"/v1/agents/{agent_id}/messages"),
        "archives": count(http, "/v1/archives/"),
        "mcp_servers": len(http.get("/v1/mcp-servers/").json()),
    }


@pytest.fixture
def subject(client: Letta) -> dict[str, str]:
    """Path ids of real objects: an agent (with a block and a tag) and a standalone block."""
    agent = new_agent(
        client, memory_blocks=[{"label": "human", "value": "Ada"}], tags=[unique("tag")]
    )
    block = client.blocks.create(label=unique("standalone"), value="v")
    return {**UNKNOWN_IDS, "agent_id": agent.id, "block_id": block.id}


class TestLoneSurrogates:
    def test_every_string_of_every_json_body_is_refused_naming_where(
        self, http: httpx.Client, subject: dict[str, str]
    ) -> None:
        openapi = http.get("/openapi.json").json()
        components = openapi["components"]["schemas"]
        before = state(http, subject["agent_id"], subject["block_id"])
        failures, walked = [], 0

        for method, path, schema in json_bodies(openapi):
            for leaf in sorted(set(string_paths(schema, components)), key=str):
                body = json.dumps(body_at(leaf, SURROGATE))  # ensure_ascii: `"\ud800"`
                response = http.request(
                    method, concrete(path, subject), content=body, headers=JSON_HEADERS
                )
                walked += 1
                expected = (
                    f"{where(leaf)}: Key '\\ud800' contains a lone surrogate, which is not "
                    "valid Unicode"
                    if leaf and leaf[-1] is KEY
                    else f"{where(leaf)}: {SURROGATE_DETAIL}"
                )
                if response.status_code != 422 or response.json().get("detail") != expected:
                    failures.append(
                        f"{method} {path} {body}: {response.status_code} {response.text}"
                    )

        assert failures == []
        assert walked >= 500, walked  # the whole schema, not a stub of it
        assert state(http, subject["agent_id"], subject["block_id"]) == before

    @pytest.mark.parametrize(
        ("method", "path", "body", "detail_where"),
        [
            ("PATCH", "/v1/agents/{agent_id}", {"description": SURROGATE}, "description"),
            ("PATCH", "/v1/agents/{agent_id}", {"tags": ["ok", SURROGATE]}, "tags.1"),
            ("PATCH", "/v1/agents/{agent_id}", {"metadata": {"k": SURROGATE}}, "metadata.k"),
            ("PATCH", "/v1/agents/{agent_id}", {"secrets": {"K": SURROGATE}}, "secrets.K"),
            ("PATCH", "/v1/blocks/{block_id}", {"metadata": {"k": SURROGATE}}, "metadata.k"),
            (
                "POST",
                "/v1/agents/{agent_id}/archival-memory",
                {"text": "t", "tags": [SURROGATE]},
                "tags.0",
            ),
            *[
                (
                    "POST",
                    f"/v1/agents/{{agent_id}}/messages{suffix}",
                    {"messages": [{"role": "user", "content": f"hi {SURROGATE}"}]},
                    "messages.0.content",
                )
                for suffix in ("", "/stream", "/async")
            ],
            (
                "POST",
                "/v1/agents/{agent_id}/messages/stream",
                {"messages": [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]},
                "messages.0.content.0.text",
            ),
        ],
        ids=[
            "agent-description",
            "agent-tag",
            "agent-metadata",
            "agent-secret",
            "block-metadata",
            "passage-tag",
            "send",
            "stream",
            "async",
            "stream-content-part",
        ],
    )
    def test_found_by_probing_is_422_and_leaves_no_run(
        self,
        http: httpx.Client,
        subject: dict[str, str],
        method: str,
        path: str,
        body: dict[str, object],
        detail_where: str,
    ) -> None:
        before = state(http, subject["agent_id"], subject["block_id"])

        response = http.request(
            method, concrete(path, subject), content=json.dumps(body), headers=JSON_HEADERS
        )

        assert response.status_code == 422, response.text
        assert response.json() == {"detail": f"{detail_where}: {SURROGATE_DETAIL}"}
        assert state(http, subject["agent_id"], subject["block_id"]) == before

    def test_a_raw_utf8_encoded_surrogate_is_refused_too(
        self, http: httpx.Client, subject: dict[str, str]
    ) -> None:
        # Python's json decodes bytes with `surrogatepass`: ED A0 80 would become U+D800.
        body = b'{"description": "\xed\xa0\x80"}'

        response = http.patch(
            f"/v1/agents/{subject['agent_id']}", content=body, headers=JSON_HEADERS
        )

        assert response.status_code == 422, response.text
        assert response.json() == {"detail": f"description: {SURROGATE_DETAIL}"}

    def test_a_surrogate_pair_is_a_character_and_is_kept(
        self, http: httpx.Client, subject: dict[str, str]
    ) -> None:
        body = '{"description": "\\ud83e\\udeb8 kelp"}'

        response = http.patch(
            f"/v1/agents/{subject['agent_id']}", content=body, headers=JSON_HEADERS
        )

        assert response.status_code == 200, response.text
        assert response.json()["description"] == "\U0001fab8 kelp"

    def test_an_agent_file_with_a_surrogate_is_refused(self, http: httpx.Client) -> None:
        name = unique("imported")
        agent = {"id": "agent-0", "name": name, "model": MODEL, "description": SURROGATE}
        data = json.dumps({"agents": [agent], "blocks": [], "tools": []})
        files = {"file": ("agent.af", data, "application/json")}
        agents = count(http, "/v1/agents/")

        response = http.post("/v1/agents/import", files=files)

        assert response.status_code == 400, response.text
        assert f"agents.0.description: {SURROGATE_DETAIL}" in response.json()["detail"]
        assert count(http, "/v1/agents/") == agents


class TestNonFiniteNumbers:
    @pytest.mark.parametrize(
        ("literal", "detail"),
        [
            ("NaN", "NaN is not a valid JSON number"),
            ("Infinity", "Infinity is not a valid JSON number"),
            ("-Infinity", "-Infinity is not a valid JSON number"),
            ("1e400", "Number is too large (beyond a 64-bit float)"),
        ],
    )
    def test_is_refused_naming_where_and_nothing_is_stored(
        self, http: httpx.Client, subject: dict[str, str], literal: str, detail: str
    ) -> None:
        before = state(http, subject["agent_id"], subject["block_id"])

        patched = http.patch(
            f"/v1/agents/{subject['agent_id']}",
            content=f'{{"metadata": {{"score": {literal}}}}}',
            headers=JSON_HEADERS,
        )
        created = http.post(
            "/v1/agents/",
            content=f'{{"model": "{MODEL}", "memory_blocks": [{{"label": "l", "value": "v",'
            f' "limit": {literal}}}]}}',
            headers=JSON_HEADERS,
        )

        assert patched.status_code == 422, patched.text
        assert patched.json() == {"detail": f"metadata.score: {detail}"}
        assert created.status_code == 422, created.text
        assert created.json() == {"detail": f"memory_blocks.0.limit: {detail}"}
        assert state(http, subject["agent_id"], subject["block_id"]) == before


class TestContextWindowBound:
    @pytest.mark.parametrize(
        ("value", "detail"),
        [
            (
                str(CONTEXT_WINDOW_TOKENS_MAX + 1),
                f"context_window_limit: Input should be less than or equal to "
                f"{CONTEXT_WINDOW_TOKENS_MAX}",
            ),
            ("1e30", "context_window_limit: Input should be an integer that fits in 64 bits"),
            (
                "1" + "0" * 30,
                "context_window_limit: Input should be an integer that fits in 64 bits",
            ),
            ("0", "context_window_limit: Input should be greater than or equal to 1"),
        ],
        ids=["just-over", "float-1e30", "int-1e30", "zero"],
    )
    def test_over_the_bound_is_422_and_changes_nothing(
        self, http: httpx.Client, subject: dict[str, str], value: str, detail: str
    ) -> None:
        agent_path = f"/v1/agents/{subject['agent_id']}"
        window = http.get(agent_path).json()["llm_config"]["context_window"]
        body = f'{{"context_window_limit": {value}}}'

        patched = http.patch(agent_path, content=body, headers=JSON_HEADERS)
        conversation = http.post(
            "/v1/conversations/",
            params={"agent_id": subject["agent_id"]},
            content=body,
            headers=JSON_HEADERS,
        )

        assert patched.status_code == 422, patched.text
        assert patched.json() == {"detail": detail}
        assert conversation.status_code == 422, conversation.text
        assert conversation.json() == {"detail": detail}
        assert http.get(agent_path).json()["llm_config"]["context_window"] == window

    def test_the_bound_itself_is_accepted(
        self, http: httpx.Client, subject: dict[str, str]
    ) -> None:
        response = http.patch(
            f"/v1/agents/{subject['agent_id']}",
            json={"context_window_limit": CONTEXT_WINDOW_TOKENS_MAX},
        )

        assert response.status_code == 200, response.text
        assert response.json()["llm_config"]["context_window"] == CONTEXT_WINDOW_TOKENS_MAX

    def test_an_llm_config_over_the_bound_is_422(self, http: httpx.Client) -> None:
        llm_config = {
            "model": "gpt-4o-mini",
            "model_endpoint_type": "openai",
            "context_window": 10**12,
        }

        response = http.post("/v1/agents/", json={"name": unique("big"), "llm_config": llm_config})

        assert response.status_code == 422, response.text
        assert response.json() == {
            "detail": f"llm_config: context_window must be between 1 and "
            f"{CONTEXT_WINDOW_TOKENS_MAX} tokens"
        }

    def test_max_tokens_is_bounded_too(self, http: httpx.Client, subject: dict[str, str]) -> None:
        response = http.patch(f"/v1/agents/{subject['agent_id']}", json={"max_tokens": 10**15})

        assert response.status_code == 422, response.text
        assert response.json()["detail"].startswith("max_tokens: Input should be less than")


CONTROL_CHARACTERS: Final = ["\x00", "\n", "\t", "\x1b", "\x7f", "\x85"]


class TestControlCharactersInIdentifiers:
    @pytest.mark.parametrize("character", CONTROL_CHARACTERS, ids=repr)
    @pytest.mark.parametrize(
        ("method", "path", "body", "field"),
        [
            ("POST", "/v1/agents/", {"model": MODEL, "name": "a{c}b"}, "name"),
            ("PATCH", "/v1/agents/{agent_id}", {"name": "a{c}b"}, "name"),
            ("PATCH", "/v1/agents/{agent_id}", {"tags": ["ok", "t{c}"]}, "tags.1"),
            (
                "POST",
                "/v1/agents/",
                {"model": MODEL, "memory_blocks": [{"label": "l{c}", "value": "v"}]},
                "memory_blocks.0.label",
            ),
            ("POST", "/v1/blocks/", {"label": "l{c}", "value": "v"}, "label"),
            ("PATCH", "/v1/blocks/{block_id}", {"label": "{c}"}, "label"),
            ("PATCH", "/v1/blocks/{block_id}", {"tags": ["t{c}"]}, "tags.0"),
            (
                "POST",
                "/v1/agents/{agent_id}/archival-memory",
                {"text": "t", "tags": ["{c}"]},
                "tags.0",
            ),
            ("POST", "/v1/archives/", {"name": "n{c}"}, "name"),
        ],
        ids=[
            "agent-name",
            "agent-rename",
            "agent-tag",
            "memory-block-label",
            "block-label",
            "block-relabel",
            "block-tag",
            "passage-tag",
            "archive-name",
        ],
    )
    def test_is_422_naming_the_field_and_nothing_changes(
        self,
        http: httpx.Client,
        subject: dict[str, str],
        method: str,
        path: str,
        body: dict[str, Any],
        field: str,
        character: str,
    ) -> None:
        filled = json.loads(json.dumps(body).replace("{c}", json.dumps(character)[1:-1]))
        before = state(http, subject["agent_id"], subject["block_id"])

        response = http.request(method, concrete(path, subject), json=filled)

        assert response.status_code == 422, response.text
        code = f"U+{ord(character):04X}"
        assert response.json() == {
            "detail": f"{field}: must not contain control characters (found {code})"
        }
        assert state(http, subject["agent_id"], subject["block_id"]) == before

    def test_other_unicode_is_welcome(self, http: httpx.Client) -> None:
        name = f"Zoë 🌊 {unique('kelp')}"

        created = http.post(
            "/v1/agents/",
            json={"model": MODEL, "name": name, "tags": ["日本語"], "memory_blocks": []},
        )

        assert created.status_code == 200, created.text
        assert created.json()["name"] == name

    def test_the_schema_documents_the_rule(self, http: httpx.Client) -> None:
        schemas = http.get("/openapi.json").json()["components"]["schemas"]
        variants = schemas["AgentCreate"]["properties"]["name"]["anyOf"]

        assert any("pattern" in variant for variant in variants), variants


class TestHistorySequenceBounds:
    @pytest.mark.parametrize("seq", [2**63, 2**70, 10**30], ids=["2^63", "2^70", "1e30"])
    def test_huge_seq_is_4xx(self, client: Letta, http: httpx.Client, seq: int) -> None:
        block = client.blocks.create(label=unique("hist"), value="v")
        client.blocks.update(block.id, value="w")
        base = f"/v1/blocks/{block.id}/history"

        responses = [
            http.get(f"{base}/{seq}"),
            http.post(f"{base}/{seq}/restore"),
            http.get(base, params={"after": seq}),
            http.get(base, params={"before": seq}),
        ]

        assert [r.status_code // 100 for r in responses] == [4, 4, 4, 4], [
            (r.status_code, r.text) for r in responses
        ]
        assert all(isinstance(r.json()["detail"], str) for r in responses)
        assert client.blocks.retrieve(block.id).value == "w"

    def test_the_largest_seq_is_a_plain_not_found(self, client: Letta, http: httpx.Client) -> None:
        block = client.blocks.create(label=unique("hist"), value="v")

        response = http.get(f"/v1/blocks/{block.id}/history/{2**63 - 1}")

        assert response.status_code == 404, response.text

    def test_every_integer_parameter_answers_4xx_to_a_huge_value(
        self, http: httpx.Client, subject: dict[str, str]
    ) -> None:
        """Walks every integer path and query parameter in the OpenAPI document."""
        openapi = http.get("/openapi.json").json()
        failures, walked = [], 0
        for path, operations in openapi["paths"].items():
            for method, operation in operations.items():
                for parameter in operation.get("parameters", ()):
                    if not _is_integer(parameter.get("schema", {})):
                        continue
                    for huge in (2**63, 2**80):
                        ids = dict(subject)
                        params = {}
                        if parameter["in"] == "path":
                            ids[parameter["name"]] = str(huge)
                        else:
                            params[parameter["name"]] = huge
                        response = http.request(
                            method.upper(), concrete(path, ids), params=params, json={}
                        )
                        walked += 1
                        if response.status_code >= 500:
                            failures.append(f"{method} {path} {parameter['name']}={huge}")
        assert failures == []
        assert walked >= 20, walked


def _is_integer(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "integer" or any(
        _is_integer(variant) for variant in schema.get("anyOf", ())
    )


class TestHead:
    def test_head_on_health_is_200_without_a_body(self, kelpie_server: str) -> None:
        with httpx.Client(base_url=kelpie_server) as raw:
            head = raw.head("/v1/health")
            get = raw.get("/v1/health")

        assert head.status_code == 200, head.text
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == str(len(get.content))

    def test_every_get_route_answers_head_as_it_answers_get(
        self, http: httpx.Client, subject: dict[str, str]
    ) -> None:
        openapi = http.get("/openapi.json").json()
        mismatches, walked = [], 0
        for path, operations in openapi["paths"].items():
            if "get" not in operations:
                continue
            url = concrete(path, subject)
            head, get = http.head(url), http.get(url)
            walked += 1
            if head.status_code != get.status_code or head.content:
                mismatches.append(f"{path}: HEAD {head.status_code}, GET {get.status_code}")
        assert mismatches == []
        assert walked >= 30, walked

    def test_head_on_a_post_only_route_is_405(self, http: httpx.Client) -> None:
        response = http.head(f"/v1/blocks/{UNKNOWN_BLOCK_ID}/history/1/restore")

        assert response.status_code == 405
        assert "GET" not in response.headers["allow"]

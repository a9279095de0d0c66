"""/openapi.json says what the server sends (issue 14): every error as `{"detail": str}`
(never FastAPI's `detail` array), each operation's error statuses derived from what can
answer it, bodies read by hand and event streams documented. Regression tests for what
`test_openapi_fuzz.py` found."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from letta_client import Letta

from ._support import new_agent

ERROR_REF = "#/components/schemas/ErrorResponse"
UNKNOWN_AGENT = "agent-00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def openapi(kelpie_server: str) -> dict[str, Any]:
    schema: dict[str, Any] = httpx.get(f"{kelpie_server}/openapi.json").json()
    return schema


def responses(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = openapi["paths"][path][method]["responses"]
    return found


def test_every_error_is_documented_as_a_detail_sentence(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    wrong = [
        f"{method} {path} {status}"
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400
        and response["content"] != {"application/json": {"schema": {"$ref": ERROR_REF}}}
    ]

    assert wrong == []
    assert "HTTPValidationError" not in schemas
    assert schemas["ErrorResponse"]["required"] == ["detail"]
    assert schemas["ErrorResponse"]["properties"]["detail"]["type"] == "string"


@pytest.mark.parametrize(
    ("method", "path", "template", "body", "status"),
    [
        ("GET", "/v1/agents/not-an-id", "/v1/agents/{agent_id}", None, 422),
        ("GET", f"/v1/agents/{UNKNOWN_AGENT}", "/v1/agents/{agent_id}", None, 404),
        ("GET", "/v1/agents?after=a&before=a", "/v1/agents", None, 400),
        ("POST", "/v1/agents", "/v1/agents", {"model": 1}, 422),
        ("POST", "/v1/agents", "/v1/agents", "{", 422),
    ],
)
def test_error_bodies_are_what_the_schema_documents(
    http: httpx.Client,
    openapi: dict[str, Any],
    method: str,
    path: str,
    template: str,
    body: object,
    status: int,
) -> None:
    if isinstance(body, str):
        headers = {"content-type": "application/json"}
        response = http.request(method, path, content=body, headers=headers)
    else:
        response = http.request(method, path, json=body)

    assert response.status_code == status, response.text
    assert set(response.json()) == {"detail"}
    assert isinstance(response.json()["detail"], str)
    assert str(status) in responses(openapi, method.lower(), template)


def test_statuses_follow_what_can_answer(openapi: dict[str, Any]) -> None:
    def statuses(method: str, path: str) -> set[int]:
        return {int(status) for status in responses(openapi, method, path)}

    # Open to everyone, no input, no services: nothing but its answer.
    assert statuses("get", "/v1/health") == {200}
    # No input: no 4xx of the request's own; the guard's and the database's still.
    assert statuses("get", "/v1/agents/count") == {200, 401, 429, 503}
    # A body that writes: everything the guard, validation and the services answer.
    assert statuses("post", "/v1/agents") == {
        200,
        *(400, 401, 404, 408, 409, 413, 422, 429, 503),
    }
    # A read by id: no conflict, no body to be too large.
    assert statuses("get", "/v1/agents/{agent_id}") == {200, 400, 401, 404, 422, 429, 503}


def test_bodies_read_by_hand_are_documented(openapi: dict[str, Any]) -> None:
    imported = openapi["paths"]["/v1/agents/import"]["post"]["requestBody"]
    upload = openapi["paths"]["/v1/agents/{agent_id}/workspace/files/{path}"]["put"]

    form = imported["content"]["multipart/form-data"]["schema"]
    assert imported["required"] is True
    assert form["required"] == ["file"]
    assert form["properties"]["file"] == {
        "type": "string",
        "format": "binary",
        "description": "The agent file",
    }
    assert list(upload["requestBody"]["content"]) == ["application/octet-stream"]
    assert "413" in upload["responses"]


@pytest.mark.parametrize(
    ("path", "media_types"),
    [
        ("/v1/agents/{agent_id}/messages", ["application/json", "text/event-stream"]),
        ("/v1/agents/{agent_id}/messages/stream", ["text/event-stream"]),
        ("/v1/conversations/{conversation_id}/messages", ["application/json", "text/event-stream"]),
        ("/v1/conversations/{conversation_id}/stream", ["text/event-stream"]),
        ("/v1/runs/{run_id}/stream", ["text/event-stream"]),
    ],
)
def test_streams_are_documented_event_by_event(
    openapi: dict[str, Any], path: str, media_types: list[str]
) -> None:
    documented = responses(openapi, "post", path)

    assert sorted(documented["200"]["content"]) == media_types
    event = documented["200"]["content"]["text/event-stream"]["itemSchema"]
    assert event["required"] == ["data"]
    assert "410" in documented  # a followed run's stream is no longer kept


def test_an_empty_otid_follows_no_run(client: Letta, http: httpx.Client) -> None:
    """Was a 500: the otid lookup asserted that every otid gives a request token."""
    agent = new_agent(client)
    conversation = http.post("/v1/conversations", params={"agent_id": agent.id})
    assert conversation.status_code == 200, conversation.text

    response = http.post(f"/v1/conversations/{conversation.json()['id']}/stream", json={"otid": ""})

    assert response.status_code == 404, response.text
    assert response.json()["detail"].startswith("No run found for otid=")

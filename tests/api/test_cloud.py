"""Letta Cloud routes letta-code tolerates a 404 from: a 404 whose `detail` says why
(letta-api.md §1.9, §4)."""

from __future__ import annotations

import httpx
import pytest
from letta_client import Letta

from ._support import new_agent

CLOUD_REQUESTS = [
    ("GET", "/v1/metadata/balance"),
    ("POST", "/v1/metadata/feedback"),
    ("POST", "/v1/metadata/telemetry"),
    ("GET", "/v1/providers"),
    ("POST", "/v1/providers/check"),
    ("PATCH", "/v1/providers/provider-1/refresh"),
    ("POST", "/v1/tools/mcp/servers/connect"),
    ("POST", "/v1/_internal_search/cache-warm"),
    ("GET", "/v1/templates"),
    ("POST", "/v1/templates/my-template/agents"),
    ("GET", "/v1/git/agent-x/state.git/info/refs"),
    ("GET", "/v1/organizations/self/quotas"),
    ("GET", "/v1/environments"),
]


@pytest.mark.parametrize(("method", "path"), CLOUD_REQUESTS)
def test_cloud_route_is_a_clear_not_found(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, path, json={})

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"{method} {path} is a Letta Cloud feature; this Kelpie server does not"
        " provide it"
    }


def test_agent_repositories_are_cloud_only(client: Letta, http: httpx.Client) -> None:
    agent = new_agent(client)
    response = http.get(f"/v1/agents/{agent.id}/repositories")
    assert response.status_code == 404
    assert "Letta Cloud" in response.json()["detail"]


def test_unknown_route_is_still_a_plain_not_found(http: httpx.Client) -> None:
    response = http.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}

"""Working memory (a Kelpie extension) through the REST API and through an agent's tools
with a scripted model: round trips, TTLs, key-order paging with prefixes, limits and bad
input, the tools reading and writing the same keys, and the OpenAPI description."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from letta_client import Letta
from letta_client.types import ToolReturnMessage

from kelpie.schemas import (
    WORKING_MEMORY_KEY_CHARS_MAX,
    WORKING_MEMORY_KEYS_MAX,
    WORKING_MEMORY_TTL_S_MAX,
    WORKING_MEMORY_VALUE_BYTES_MAX,
)

from ._support import (
    ScriptedLlm,
    calling,
    model_tools,
    new_agent,
    reply,
    system_prompt,
    tool_call,
)

WM_TOOLS = ["working_memory_set", "working_memory_get", "working_memory_delete"]
WM_TOOLS_ALL = [*WM_TOOLS, "working_memory_list"]


def _url(agent_id: str, key: str | None = None) -> str:
    base = f"/v1/agents/{agent_id}/working-memory"
    return base if key is None else f"{base}/{key}"


def _put(http: httpx.Client, agent_id: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return http.put(_url(agent_id, key), json=body)


def _keys(http: httpx.Client, agent_id: str, **params: Any) -> list[str]:
    response = http.get(_url(agent_id), params=params)
    assert response.status_code == 200, response.text
    return [entry["key"] for entry in response.json()]


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _detail(response: httpx.Response) -> str:
    body = response.json()
    assert isinstance(body, dict), response.text
    detail = body.get("detail")
    assert isinstance(detail, str), response.text
    return detail


class TestRest:
    def test_put_then_get_round_trips_the_entry(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)
        value = {"steps": ["a", "b"], "done": False, "n": 2.5}
        put = _put(http, agent.id, "task:plan", {"value": value})
        assert put.status_code == 200, put.text
        entry = put.json()
        assert set(entry) == {"key", "value", "expires_at", "created_at", "updated_at"}
        assert (entry["key"], entry["value"], entry["expires_at"]) == ("task:plan", value, None)
        got = http.get(_url(agent.id, "task:plan"))
        assert got.status_code == 200
        assert got.json() == entry

    def test_put_again_replaces_value_and_ttl_and_keeps_created_at(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client)
        first = _put(http, agent.id, "k", {"value": 1, "ttl_s": 600}).json()
        second = _put(http, agent.id, "k", {"value": "two"}).json()
        assert second["created_at"] == first["created_at"]
        assert _time(second["updated_at"]) >= _time(first["updated_at"])
        assert (second["value"], second["expires_at"]) == ("two", None)

    def test_ttl_sets_expires_at_from_the_write_time(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client)
        entry = _put(http, agent.id, "brief", {"value": True, "ttl_s": 90}).json()
        expires = _time(entry["expires_at"]) - _time(entry["updated_at"])
        assert expires == dt.timedelta(seconds=90)

    def test_list_is_in_key_order_with_prefix_and_cursor(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client)
        for key in ("b", "a:2", "a:1", "c", "a:3"):
            assert _put(http, agent.id, key, {"value": key}).status_code == 200
        assert _keys(http, agent.id) == ["a:1", "a:2", "a:3", "b", "c"]
        assert _keys(http, agent.id, prefix="a:") == ["a:1", "a:2", "a:3"]
        assert _keys(http, agent.id, prefix="a:", limit=2) == ["a:1", "a:2"]
        assert _keys(http, agent.id, prefix="a:", after="a:2") == ["a:3"]
        assert _keys(http, agent.id, order="desc", limit=2) == ["c", "b"]
        assert _keys(http, agent.id, before="b", limit=2) == ["a:2", "a:3"]

    def test_delete_then_get_is_not_found(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)
        _put(http, agent.id, "k", {"value": 1})
        assert http.delete(_url(agent.id, "k")).status_code == 200
        missing = http.get(_url(agent.id, "k"))
        assert missing.status_code == 404
        assert "'k' not found" in _detail(missing)
        assert http.delete(_url(agent.id, "k")).status_code == 404
        assert _keys(http, agent.id) == []

    def test_deleting_the_agent_takes_its_working_memory(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client)
        _put(http, agent.id, "k", {"value": 1})
        client.agents.delete(agent.id)
        for response in (http.get(_url(agent.id)), http.get(_url(agent.id, "k"))):
            assert response.status_code == 404
            assert _detail(response) == f"Agent {agent.id} not found"

    def test_key_limit_is_a_409_and_replacing_a_key_still_works(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client)
        for index in range(WORKING_MEMORY_KEYS_MAX):
            assert _put(http, agent.id, f"k{index}", {"value": index}).status_code == 200
        full = _put(http, agent.id, "one-more", {"value": 0})
        assert full.status_code == 409
        assert str(WORKING_MEMORY_KEYS_MAX) in _detail(full)
        assert _put(http, agent.id, "k0", {"value": "replaced"}).status_code == 200
        assert http.get(_url(agent.id, "one-more")).status_code == 404


BAD_PUTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("space", "has space", {"value": 1}, 422, "key must be 1 to"),
    ("long", "k" * (WORKING_MEMORY_KEY_CHARS_MAX + 1), {"value": 1}, 422, "key must be"),
    ("null", "k", {"value": None}, 422, "value must not be null"),
    ("missing", "k", {"ttl_s": 5}, 422, "value: Field required"),
    ("ttl_zero", "k", {"value": 1, "ttl_s": 0}, 422, "ttl_s"),
    ("ttl_long", "k", {"value": 1, "ttl_s": WORKING_MEMORY_TTL_S_MAX + 1}, 422, "ttl_s"),
    ("ttl_text", "k", {"value": 1, "ttl_s": "soon"}, 422, "ttl_s"),
    (
        "big",
        "k",
        {"value": "x" * WORKING_MEMORY_VALUE_BYTES_MAX},
        422,
        f"the limit is {WORKING_MEMORY_VALUE_BYTES_MAX}",
    ),
]


class TestBadInput:
    @pytest.mark.parametrize(
        ("key", "body", "status", "text"),
        [case[1:] for case in BAD_PUTS],
        ids=[case[0] for case in BAD_PUTS],
    )
    def test_bad_put_is_rejected_and_changes_nothing(
        self,
        client: Letta,
        http: httpx.Client,
        key: str,
        body: dict[str, Any],
        status: int,
        text: str,
    ) -> None:
        agent = new_agent(client)
        response = _put(http, agent.id, key, body)
        assert response.status_code == status, response.text
        assert text in _detail(response)
        assert _keys(http, agent.id) == []

    def test_unknown_agent_is_404_and_malformed_id_is_422(self, http: httpx.Client) -> None:
        unknown = "agent-00000000-0000-4000-8000-000000000000"
        for response in (
            _put(http, unknown, "k", {"value": 1}),
            http.get(_url(unknown, "k")),
            http.delete(_url(unknown, "k")),
            http.get(_url(unknown)),
        ):
            assert response.status_code == 404, response.text
            assert _detail(response) == f"Agent {unknown} not found"
        malformed = http.get(_url("agent-nope"))
        assert malformed.status_code == 422
        assert "agent_id" in _detail(malformed)

    def test_bad_prefix_and_limit_are_422(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)
        for params in ({"prefix": "a b"}, {"limit": 0}, {"order": "sideways"}):
            response = http.get(_url(agent.id), params=params)
            assert response.status_code == 422, (params, response.text)
            assert _detail(response)


def _returns(response: Any) -> list[ToolReturnMessage]:
    return [m for m in response.messages if isinstance(m, ToolReturnMessage)]


def _say(client: Letta, agent_id: str, text: str = "go") -> Any:
    return client.agents.messages.create(agent_id, messages=[{"role": "user", "content": text}])


class TestTools:
    def test_tools_are_not_attached_by_default_and_attach_by_name(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        plain = new_agent(client)
        names = {tool.name for tool in client.agents.tools.list(plain.id).items}
        assert not names & set(WM_TOOLS_ALL)
        agent = new_agent(client, tools=WM_TOOLS_ALL)
        names = {tool.name for tool in client.agents.tools.list(agent.id).items}
        assert set(WM_TOOLS_ALL) <= names
        script.enqueue(reply("hi"))
        _say(client, agent.id)
        assert set(WM_TOOLS_ALL) <= set(model_tools(script.requests()[0]))

    def test_a_tool_write_is_read_through_rest_and_a_rest_write_by_the_tool(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, tools=WM_TOOLS)
        _put(http, agent.id, "from-rest", {"value": {"x": 1}})
        set_call = tool_call("working_memory_set", {"key": "plan", "value": ["a"], "ttl_s": 600})
        get_call = tool_call("working_memory_get", {"key": "from-rest"})
        script.enqueue(calling(set_call, get_call), reply("done"))

        response = _say(client, agent.id)

        stored, fetched = _returns(response)
        assert stored.status == "success", stored.tool_return
        assert "Stored 'plan'" in stored.tool_return
        assert fetched.status == "success"
        assert json.loads(fetched.tool_return) == {"x": 1}
        entry = http.get(_url(agent.id, "plan")).json()
        assert entry["value"] == ["a"]
        assert _time(entry["expires_at"]) - _time(entry["updated_at"]) == dt.timedelta(minutes=10)

    def test_a_later_call_in_the_same_step_sees_an_earlier_write(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, tools=WM_TOOLS_ALL)
        _put(http, agent.id, "old", {"value": 1})
        calls = [
            tool_call("working_memory_set", {"key": "new", "value": "v"}),
            tool_call("working_memory_delete", {"key": "old"}),
            tool_call("working_memory_get", {"key": "new"}),
            tool_call("working_memory_list", {}),
            tool_call("working_memory_get", {"key": "old"}),
        ]
        script.enqueue(calling(*calls), reply("done"))

        response = _say(client, agent.id)

        returns = _returns(response)
        assert [r.status for r in returns] == ["success"] * 4 + ["error"]
        assert json.loads(returns[2].tool_return) == "v"
        assert json.loads(returns[3].tool_return) == ["new"]
        assert "'old' not found" in returns[4].tool_return
        assert _keys(http, agent.id) == ["new"]

    def test_list_tool_filters_by_prefix(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, tools=["working_memory_list"])
        for key in ("task:1", "task:2", "note"):
            _put(http, agent.id, key, {"value": 0})
        script.enqueue(calling(tool_call("working_memory_list", {"prefix": "task:"})), reply("ok"))

        [listed] = _returns(_say(client, agent.id))

        assert json.loads(listed.tool_return) == ["task:1", "task:2"]

    def test_bad_tool_arguments_are_an_error_return_and_write_nothing(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, tools=WM_TOOLS)
        call = tool_call("working_memory_set", {"key": "bad key", "value": 1})
        script.enqueue(calling(call), reply("sorry"))

        [returned] = _returns(_say(client, agent.id))

        assert returned.status == "error"
        assert "key must be 1 to" in returned.tool_return
        assert _keys(http, agent.id) == []

    def test_working_memory_is_not_in_the_system_prompt(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, tools=WM_TOOLS)
        _put(http, agent.id, "marker", {"value": "zebra-crossing-7"})
        script.enqueue(reply("hi"))
        _say(client, agent.id)
        assert "zebra-crossing-7" not in system_prompt(script.requests()[0])


def test_openapi_describes_the_working_memory_routes(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/v1/agents/{agent_id}/working-memory"]) == {"get"}
    assert set(paths["/v1/agents/{agent_id}/working-memory/{key}"]) == {"get", "put", "delete"}
    components = schema["components"]["schemas"]
    entry = components["WorkingMemoryEntry"]["properties"]
    assert entry["expires_at"]["description"]
    ttl_s = components["WorkingMemorySet"]["properties"]["ttl_s"]
    assert ttl_s["description"]
    assert {"type": "integer", "minimum": 1, "maximum": WORKING_MEMORY_TTL_S_MAX} in ttl_s["anyOf"]
    listing = paths["/v1/agents/{agent_id}/working-memory"]["get"]
    params = {param["name"]: param for param in listing["parameters"]}
    assert {"prefix", "after", "before", "limit", "order"} <= set(params)
    assert params["order"]["schema"]["default"] == "asc"

"""Block history (a Kelpie extension) through the API: every change by PATCH or by an
agent's memory tool is an entry with its source, listed by seq and restorable; a restore is
an entry of its own and rebuilds attached agents' prompts; the bound on entries kept."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from letta_client import Letta
from letta_client.types import ToolReturnMessage

from kelpie.schemas import BLOCK_HISTORY_ENTRIES_MAX

from ._support import ScriptedLlm, calling, new_agent, reply, stored_system_text, tool_call

HUMAN: Any = {"label": "human", "value": "Name: Ada\nLikes: tea"}


def _history(http: httpx.Client, block_id: str, **params: Any) -> list[dict[str, Any]]:
    response = http.get(f"/v1/blocks/{block_id}/history", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def _restore(http: httpx.Client, block_id: str, seq: int, **params: Any) -> httpx.Response:
    return http.post(f"/v1/blocks/{block_id}/history/{seq}/restore", params=params)


def _human_id(client: Letta, agent_id: str) -> str:
    return client.agents.blocks.retrieve("human", agent_id=agent_id).id


def _say(client: Letta, agent_id: str) -> Any:
    return client.agents.messages.create(agent_id, messages=[{"role": "user", "content": "go"}])


class TestApiChanges:
    def test_block_patch_is_an_api_entry_with_old_and_new(
        self, client: Letta, http: httpx.Client
    ) -> None:
        block = client.blocks.create(label="notes", value="one")
        patched = http.patch(f"/v1/blocks/{block.id}", json={"value": "two", "description": "d"})
        [entry] = _history(http, block.id)
        assert (entry["block_id"], entry["seq"], entry["source"]) == (block.id, 1, "api")
        assert entry["old"] == {
            "value": "one",
            "label": "notes",
            "description": None,
            "limit": 100000,
        }
        assert entry["new"] == {
            "value": "two",
            "label": "notes",
            "description": "d",
            "limit": 100000,
        }
        assert entry["created_at"] == patched.json()["updated_at"]
        assert entry["agent_id"] is None
        one = http.get(f"/v1/blocks/{block.id}/history/1")
        assert one.status_code == 200
        assert one.json() == entry

    def test_core_memory_patch_names_the_agent(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN])
        client.agents.blocks.update("human", agent_id=agent.id, value="Name: Grace")
        [entry] = _history(http, _human_id(client, agent.id))
        assert (entry["source"], entry["agent_id"]) == ("api", agent.id)
        assert (entry["old"]["value"], entry["new"]["value"]) == (HUMAN["value"], "Name: Grace")

    def test_a_patch_that_changes_no_tracked_field_adds_no_entry(
        self, client: Letta, http: httpx.Client
    ) -> None:
        block = client.blocks.create(label="notes", value="same")
        client.blocks.update(block.id, metadata={"k": "v"}, tags=["t"])
        client.blocks.update(block.id, value="same")
        assert _history(http, block.id) == []

    def test_rejected_patch_adds_no_entry(self, client: Letta, http: httpx.Client) -> None:
        block = client.blocks.create(label="notes", value="short", limit=10)
        response = http.patch(f"/v1/blocks/{block.id}", json={"value": "far too long for it"})
        assert response.status_code == 422
        assert _history(http, block.id) == []


class TestToolChanges:
    def test_memory_tool_edit_is_a_tool_entry_naming_call_agent_and_step(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN])
        call = tool_call(
            "memory_replace", {"label": "human", "old_string": "tea", "new_string": "coffee"}
        )
        script.enqueue(calling(call), reply("noted"))

        response = _say(client, agent.id)

        [returned] = [m for m in response.messages if isinstance(m, ToolReturnMessage)]
        [entry] = _history(http, _human_id(client, agent.id))
        assert (entry["source"], entry["tool_call_id"], entry["agent_id"]) == (
            "tool",
            call["id"],
            agent.id,
        )
        assert entry["step_id"] == returned.step_id
        assert entry["new"]["value"] == "Name: Ada\nLikes: coffee"

    def test_two_calls_in_one_step_are_two_entries(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN])
        first = tool_call("memory_insert", {"label": "human", "new_string": "City: Oslo"})
        second = tool_call(
            "memory_replace", {"label": "human", "old_string": "Ada", "new_string": "Ann"}
        )
        script.enqueue(calling(first, second), reply("noted"))

        _say(client, agent.id)

        entries = _history(http, _human_id(client, agent.id), order="asc")
        assert [(e["seq"], e["tool_call_id"]) for e in entries] == [
            (1, first["id"]),
            (2, second["id"]),
        ]
        assert entries[1]["old"] == entries[0]["new"]
        assert entries[1]["new"]["value"] == "Name: Ann\nLikes: tea\nCity: Oslo"

    def test_patch_rename_records_the_label_change(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN], tools=["memory_apply_patch"])
        block_id = _human_id(client, agent.id)
        patch = "*** Update Block: human\n*** Move to: user\n-Likes: tea\n+Likes: coffee"
        script.enqueue(
            calling(tool_call("memory_apply_patch", {"label": "", "patch": patch})), reply("ok")
        )

        _say(client, agent.id)

        [entry] = _history(http, block_id)
        assert (entry["old"]["label"], entry["new"]["label"]) == ("human", "user")
        assert entry["new"]["value"] == "Name: Ada\nLikes: coffee"

    def test_omni_delete_detaches_without_an_entry(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN], tools=["memory"])
        block_id = _human_id(client, agent.id)
        call = tool_call("memory", {"command": "delete", "path": "/memories/human"})
        script.enqueue(calling(call), reply("ok"))

        _say(client, agent.id)

        assert client.blocks.retrieve(block_id).value == HUMAN["value"]
        assert _history(http, block_id) == []


class TestListing:
    def test_history_pages_by_seq(self, client: Letta, http: httpx.Client) -> None:
        block = client.blocks.create(label="notes", value="v0")
        for index in range(1, 6):
            client.blocks.update(block.id, value=f"v{index}")

        def seqs(**params: Any) -> list[int]:
            return [entry["seq"] for entry in _history(http, block.id, **params)]

        assert seqs() == [5, 4, 3, 2, 1]
        assert seqs(limit=2) == [5, 4]
        assert seqs(limit=2, after=4) == [3, 2]
        assert seqs(order="asc", after=3) == [4, 5]
        assert seqs(order="asc", before=3) == [1, 2]

    def test_only_the_latest_entries_are_kept(self, client: Letta, http: httpx.Client) -> None:
        block = client.blocks.create(label="notes", value="v0")
        total = BLOCK_HISTORY_ENTRIES_MAX + 3
        for index in range(1, total + 1):
            client.blocks.update(block.id, value=f"v{index}")
        entries = _history(http, block.id, limit=1000, order="asc")
        assert [e["seq"] for e in entries] == list(range(4, total + 1))
        assert entries[-1]["new"]["value"] == client.blocks.retrieve(block.id).value
        dropped = http.get(f"/v1/blocks/{block.id}/history/3")
        assert dropped.status_code == 404
        assert str(BLOCK_HISTORY_ENTRIES_MAX) in dropped.json()["detail"]

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/v1/blocks/{block}/history/0", 422),
            ("/v1/blocks/{block}/history/first", 422),
            ("/v1/blocks/{block}/history/9", 404),
            ("/v1/blocks/block-00000000-0000-4000-8000-000000000000/history", 404),
            ("/v1/blocks/not-a-block/history", 422),
            ("/v1/blocks/{block}/history?after=seven", 400),
        ],
    )
    def test_bad_references_are_clear_errors(
        self, client: Letta, http: httpx.Client, path: str, status: int
    ) -> None:
        block = client.blocks.create(label="notes", value="v0")
        response = http.get(path.format(block=block.id))
        assert response.status_code == status, response.text
        assert response.json()["detail"]


class TestRestore:
    def test_restore_new_and_old_sides_are_entries_of_their_own(
        self, client: Letta, http: httpx.Client
    ) -> None:
        block = client.blocks.create(label="notes", value="v0")
        client.blocks.update(block.id, value="v1")
        client.blocks.update(block.id, value="v2", label="jottings")

        old = _restore(http, block.id, 1, side="old")
        assert old.status_code == 200, old.text
        assert (old.json()["value"], old.json()["label"]) == ("v0", "notes")
        new = _restore(http, block.id, 2)
        assert (new.json()["value"], new.json()["label"]) == ("v2", "jottings")

        entries = _history(http, block.id, order="asc")
        assert [e["source"] for e in entries] == ["api", "api", "restore", "restore"]
        assert [(e["restored_seq"], e["restored_side"]) for e in entries[2:]] == [
            (1, "old"),
            (2, "new"),
        ]
        assert entries[2]["old"]["value"] == "v2"
        assert entries[3]["new"] == entries[1]["new"]
        assert client.blocks.retrieve(block.id).value == "v2"

    def test_restore_rebuilds_the_attached_agents_prompts(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN])
        block_id = _human_id(client, agent.id)
        client.agents.blocks.update("human", agent_id=agent.id, value="Name: Grace")
        assert "Name: Grace" in stored_system_text(client, agent.id)

        assert _restore(http, block_id, 1, side="old").status_code == 200

        text = stored_system_text(client, agent.id)
        assert "Likes: tea" in text
        assert "Name: Grace" not in text

    def test_restoring_a_label_an_agent_already_uses_is_a_409(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN])
        block_id = _human_id(client, agent.id)
        client.agents.blocks.update("human", agent_id=agent.id, label="person")
        client.agents.blocks.attach(
            client.blocks.create(label="human", value="x").id, agent_id=agent.id
        )

        response = _restore(http, block_id, 1, side="old")

        assert response.status_code == 409
        assert "label 'human'" in response.json()["detail"]
        assert client.blocks.retrieve(block_id).label == "person"
        assert len(_history(http, block_id)) == 1

    def test_restore_of_an_unknown_entry_or_side_changes_nothing(
        self, client: Letta, http: httpx.Client
    ) -> None:
        block = client.blocks.create(label="notes", value="v0")
        client.blocks.update(block.id, value="v1")
        assert _restore(http, block.id, 5).status_code == 404
        assert _restore(http, block.id, 1, side="middle").status_code == 422
        assert client.blocks.retrieve(block.id).value == "v1"
        assert len(_history(http, block.id)) == 1


def test_openapi_describes_the_history_routes(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    paths = schema["paths"]
    assert "get" in paths["/v1/blocks/{block_id}/history"]
    assert "get" in paths["/v1/blocks/{block_id}/history/{seq}"]
    restore = paths["/v1/blocks/{block_id}/history/{seq}/restore"]["post"]
    assert {param["name"] for param in restore["parameters"]} == {"block_id", "seq", "side"}
    entry = schema["components"]["schemas"]["BlockHistoryEntry"]["properties"]
    assert entry["source"]["description"]

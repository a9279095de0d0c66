"""Client-side tools and approvals (letta-api.md §3.4): a call to a client tool or to a
tool under a `requires_approval` rule stops the turn with an approval request; the
client's reply (its tool result, or approve / deny) resumes it. The exact error texts are
the ones letta-code matches on."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from letta_client import BadRequestError, ConflictError, Letta, NotFoundError

from ._support import (
    ScriptedLlm,
    calling,
    error_detail,
    model_messages,
    model_tools,
    new_agent,
    reply,
    tool_call,
)

SHELL_TOOL: Any = {
    "name": "exec_command",
    "description": "Runs a shell command on the user's machine.",
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}},
        "required": ["cmd"],
    },
}


def _send(client: Letta, agent_id: str, text: str = "Run it", **extra: Any) -> Any:
    return client.agents.messages.create(
        agent_id, messages=[{"role": "user", "content": text}], client_tools=[SHELL_TOOL], **extra
    )


def _result(call_id: str, output: str, status: str = "success") -> dict[str, Any]:
    return {"type": "tool", "tool_call_id": call_id, "tool_return": output, "status": status}


def _reply(client: Letta, agent_id: str, *approvals: Any) -> Any:
    message: Any = {"type": "approval", "approvals": list(approvals)}
    return client.agents.messages.create(agent_id, messages=[message], client_tools=[SHELL_TOOL])


NOTE: Any = {"label": "human", "new_string": "Asked the date"}


def _human(client: Letta, agent_id: str) -> str:
    return client.agents.blocks.retrieve("human", agent_id=agent_id).value


def _types(response: Any) -> list[str | None]:
    return [message.message_type for message in response.messages]


class TestClientTools:
    def test_client_tool_call_stops_with_an_approval_request(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(calling(tool_call("exec_command", {"cmd": "ls"}, call_id="call_ls")))

        response = _send(client, agent.id)

        assert _types(response) == ["approval_request_message"]
        request = response.messages[0]
        assert request.tool_call.name == "exec_command"
        assert request.tool_call.tool_call_id == "call_ls"
        assert json.loads(request.tool_call.arguments) == {"cmd": "ls"}
        assert response.stop_reason.stop_reason == "requires_approval"
        assert "exec_command" in model_tools(script.requests()[0])

    def test_tool_result_from_the_client_resumes_the_turn(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(
            calling(tool_call("exec_command", {"cmd": "ls"}, call_id="call_ls")),
            reply("There are two files."),
        )
        _send(client, agent.id)

        response = _reply(client, agent.id, _result("call_ls", "a.txt\nb.txt"))

        assert _types(response) == ["tool_return_message", "assistant_message"]
        returned = response.messages[0]
        assert returned.tool_call_id == "call_ls"
        assert returned.tool_return == "a.txt\nb.txt"
        assert returned.status == "success"
        assert response.messages[1].content == "There are two files."
        assert response.stop_reason.stop_reason == "end_turn"
        sent = model_messages(script.requests()[1])
        assert sent[-1] == {"role": "tool", "tool_call_id": "call_ls", "content": "a.txt\nb.txt"}

    def test_history_shows_request_response_result_and_reply(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(
            calling(tool_call("exec_command", {"cmd": "pwd"}, call_id="call_pwd")),
            reply("You are in /tmp."),
        )
        _send(client, agent.id)
        _reply(client, agent.id, _result("call_pwd", "/tmp"))

        history: list[Any] = list(client.agents.messages.list(agent.id, order="asc"))

        assert [m.message_type for m in history] == [
            "system_message",
            "user_message",
            "approval_request_message",
            "approval_response_message",
            "tool_return_message",
            "assistant_message",
        ]
        response = history[3]
        assert response.approvals is not None
        assert response.approvals[0].tool_call_id == "call_pwd"

    def test_pending_approval_is_shown_on_the_agent(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(calling(tool_call("exec_command", {"cmd": "ls"}, call_id="call_p")))
        _send(client, agent.id)

        pending = client.agents.retrieve(agent.id, include=["agent.pending_approval"])

        assert pending.pending_approval is not None
        assert pending.pending_approval.tool_call.tool_call_id == "call_p"
        plain = client.agents.retrieve(agent.id)
        assert plain.pending_approval is None


class TestApproveAndDeny:
    @pytest.fixture
    def paused(self, client: Letta, script: ScriptedLlm) -> str:
        """An agent whose memory_insert waits for approval, with the call made."""
        agent = new_agent(
            client,
            memory_blocks=[{"label": "human", "value": "Name: Ada"}],
            tool_rules=[{"type": "requires_approval", "tool_name": "memory_insert"}],
        )
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(calling(tool_call("memory_insert", insert, call_id="call_mem")))
        response = client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "I like tea"}]
        )
        assert response.stop_reason.stop_reason == "requires_approval"
        return agent.id

    def test_approved_call_runs_on_the_server(
        self, client: Letta, script: ScriptedLlm, paused: str
    ) -> None:
        script.enqueue(reply("Noted."))

        response = _reply(
            client, paused, {"type": "approval", "tool_call_id": "call_mem", "approve": True}
        )

        assert _types(response) == ["tool_return_message", "assistant_message"]
        assert response.messages[0].status == "success"
        assert "Likes tea" in client.agents.blocks.retrieve("human", agent_id=paused).value

    def test_denied_call_returns_the_reason_and_changes_nothing(
        self, client: Letta, script: ScriptedLlm, paused: str
    ) -> None:
        script.enqueue(reply("Understood, I will not."))
        denial = {"type": "approval", "tool_call_id": "call_mem", "approve": False, "reason": "No"}

        response = _reply(client, paused, denial)

        returned = response.messages[0]
        assert returned.status == "error"
        assert returned.tool_return == "Error: request to call tool denied. User reason: No"
        assert client.agents.blocks.retrieve("human", agent_id=paused).value == "Name: Ada"

    def test_legacy_single_approval_form(
        self, client: Letta, script: ScriptedLlm, paused: str, http: httpx.Client
    ) -> None:
        script.enqueue(reply("Done."))
        body = {"messages": [{"type": "approval", "approve": True}]}

        response = http.post(f"/v1/agents/{paused}/messages", json=body)

        assert response.status_code == 200, response.text
        assert response.json()["messages"][0]["status"] == "success"


class TestRefusals:
    def test_wrong_tool_call_id_is_refused_with_letta_text(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(calling(tool_call("exec_command", {"cmd": "ls"}, call_id="call_right")))
        _send(client, agent.id)

        with pytest.raises(BadRequestError) as raised:
            _reply(client, agent.id, _result("call_wrong", "x"))

        detail = str(error_detail(raised.value))
        assert "Invalid tool call IDs" in detail
        assert "call_right" in detail
        assert "call_wrong" in detail
        # Nothing changed: the right reply still works.
        script.enqueue(reply("ok"))
        assert (
            _reply(client, agent.id, _result("call_right", "x")).stop_reason.stop_reason
            == "end_turn"
        )

    def test_reply_with_nothing_pending_is_refused(self, client: Letta) -> None:
        agent = new_agent(client)

        with pytest.raises(BadRequestError) as raised:
            _reply(client, agent.id, _result("call_none", "x"))

        assert "No tool call is currently awaiting approval" in str(error_detail(raised.value))

    def test_new_message_while_pending_is_409_waiting_for_approval(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(calling(tool_call("exec_command", {"cmd": "ls"})))
        _send(client, agent.id)

        with pytest.raises(ConflictError) as raised:
            _send(client, agent.id, "Something else")

        assert "waiting for approval" in str(error_detail(raised.value))


class TestParallelCalls:
    def test_mixed_step_runs_server_tool_after_the_client_result(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
        script.enqueue(
            calling(
                tool_call("exec_command", {"cmd": "date"}, call_id="call_date"),
                tool_call("memory_insert", NOTE, call_id="call_note"),
            ),
            reply("It is Monday."),
        )

        paused = _send(client, agent.id)

        # In call order: the client's call waits, the server's is shown and runs later.
        assert _types(paused) == ["approval_request_message", "tool_call_message"]
        assert paused.messages[0].tool_call.tool_call_id == "call_date"
        assert (
            "Asked the date" not in client.agents.blocks.retrieve("human", agent_id=agent.id).value
        )

        resumed = _reply(client, agent.id, _result("call_date", "Monday"))

        returns = [m for m in resumed.messages if m.message_type == "tool_return_message"]
        assert {m.tool_call_id for m in returns} == {"call_date", "call_note"}
        assert "Asked the date" in _human(client, agent.id)
        sent = model_messages(script.requests()[1])
        answered = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
        assert answered == {"call_date", "call_note"}


class TestApprovalRuleEndpoint:
    def test_update_approval_adds_and_removes_the_rule(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])

        updated = client.agents.tools.update_approval(
            "memory_insert", agent_id=agent.id, body_requires_approval=True
        )

        assert updated is not None
        rules = [(r.type, getattr(r, "tool_name", None)) for r in updated.tool_rules or []]
        assert ("requires_approval", "memory_insert") in rules
        script.enqueue(calling(tool_call("memory_insert", NOTE)))
        paused = client.agents.messages.create(agent.id, input="note it")
        assert paused.stop_reason.stop_reason == "requires_approval"
        pending: Any = paused.messages[0]
        call_id = pending.tool_call.tool_call_id
        decision = {"type": "approval", "tool_call_id": call_id, "approve": False}
        script.enqueue(reply("ok"))
        _reply(client, agent.id, decision)

        cleared = client.agents.tools.update_approval(
            "memory_insert", agent_id=agent.id, body_requires_approval=False
        )

        assert cleared is not None
        assert all(r.type != "requires_approval" for r in cleared.tool_rules or [])

    def test_update_approval_of_a_tool_not_attached_is_404(self, client: Letta) -> None:
        agent = new_agent(client)

        with pytest.raises(NotFoundError):
            client.agents.tools.update_approval(
                "no_such_tool", agent_id=agent.id, body_requires_approval=True
            )

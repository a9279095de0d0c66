"""The loop per agent type and tool rules: heartbeats and `send_message` on memgpt agents,
react agents without base tools, exit_loop / max_steps / run_first / requires_approval
rules and client tools (letta-api.md §2.13, §3.1, §3.2, §3.4)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from letta_client import Letta
from letta_client.types import AgentState, AgentType
from letta_client.types.agents import (
    ApprovalRequestMessage,
    AssistantMessage,
    ReasoningMessage,
    UserMessage,
)

from ._support import (
    MODEL,
    ScriptedLlm,
    calling,
    model_messages,
    model_tools,
    new_agent,
    reply,
    tool_call,
    unique,
)

HEARTBEAT_AGENT_TYPES: list[AgentType] = ["memgpt_agent", "memgpt_v2_agent"]
HUMAN_VALUE = "Name: Ada"
HUMAN_BLOCK: Any = {"label": "human", "value": HUMAN_VALUE}
HELLO: Any = [{"role": "user", "content": "Hello"}]
HEARTBEAT_TEXT = (
    "[This is an automated system message hidden from the user] Function called using "
    "request_heartbeat=true, returning control"
)
# A memory edit each heartbeat agent type has among its base tools, and the value after it.
MEMORY_EDIT: dict[str, tuple[str, dict[str, object], str]] = {
    "memgpt_agent": (
        "core_memory_append",
        {"label": "human", "content": "Likes tea"},
        "Name: Ada\nLikes tea",
    ),
    "memgpt_v2_agent": (
        "memory_insert",
        {"label": "human", "new_string": "Likes tea"},
        "Name: Ada\nLikes tea",
    ),
}
ASK_USER: Any = {
    "name": "ask_user",
    "description": "Ask the user a question and wait for the answer.",
    "parameters": {
        "type": "object",
        "properties": {"question": {"type": "string", "description": "The question"}},
        "required": ["question"],
    },
}


def create_agent(client: Letta, **fields: Any) -> AgentState:
    """An agent on the test model with a human block; `fields` go to agents.create."""
    return client.agents.create(
        name=unique("agent"), model=MODEL, memory_blocks=[HUMAN_BLOCK], **fields
    )


def block_value(client: Letta, agent_id: str) -> str:
    return client.agents.blocks.retrieve("human", agent_id=agent_id).value


def with_heartbeat(arguments: dict[str, object], heartbeat: bool) -> dict[str, object]:
    return {**arguments, "request_heartbeat": heartbeat}


@pytest.mark.parametrize("agent_type", HEARTBEAT_AGENT_TYPES)
class TestHeartbeatAgents:
    def test_tools_carry_a_required_request_heartbeat(
        self, client: Letta, script: ScriptedLlm, agent_type: AgentType
    ) -> None:
        agent = create_agent(client, agent_type=agent_type)
        script.enqueue(calling(tool_call("send_message", {"message": "hi"})))

        client.agents.messages.create(agent.id, messages=HELLO)

        tools = model_tools(script.requests()[0])
        assert {"send_message", "conversation_search", MEMORY_EDIT[agent_type][0]} <= set(tools)
        for name, parameters in tools.items():
            if name == "send_message":
                continue  # terminal: nothing to continue after it
            properties = parameters["properties"]
            assert isinstance(properties, dict)
            assert properties["request_heartbeat"]["type"] == "boolean", name
            required = parameters["required"]
            assert isinstance(required, list)
            assert "request_heartbeat" in required, name

    def test_send_message_is_the_reply_and_the_last_step(
        self, client: Letta, script: ScriptedLlm, agent_type: AgentType
    ) -> None:
        agent = create_agent(client, agent_type=agent_type)
        script.enqueue(
            calling(tool_call("send_message", {"message": "hi"}), content="The user greeted me."),
            reply("This answer must not be asked for."),
        )

        response = client.agents.messages.create(agent.id, messages=HELLO)

        replies = [m for m in response.messages if isinstance(m, AssistantMessage)]
        assert [m.content for m in replies] == ["hi"]
        thoughts = [m for m in response.messages if isinstance(m, ReasoningMessage)]
        assert [m.reasoning for m in thoughts] == ["The user greeted me."]
        assert "tool_call_message" not in [m.message_type for m in response.messages]
        assert len(script.requests()) == 1

    def test_send_message_without_heartbeat_ends_the_turn(
        self, client: Letta, script: ScriptedLlm, agent_type: AgentType
    ) -> None:
        # Letta's V2 loop (_decide_continuation): a terminal tool reports `tool_rule` only
        # when the model asked for a heartbeat; otherwise the turn ends as `end_turn`.
        agent = create_agent(client, agent_type=agent_type)
        script.enqueue(calling(tool_call("send_message", {"message": "hi"})))

        response = client.agents.messages.create(agent.id, messages=HELLO)

        assert response.stop_reason.stop_reason == "end_turn"

    def test_heartbeat_calls_the_model_again_and_stays_hidden(
        self, client: Letta, script: ScriptedLlm, agent_type: AgentType
    ) -> None:
        agent = create_agent(client, agent_type=agent_type)
        tool, arguments, expected = MEMORY_EDIT[agent_type]
        script.enqueue(
            calling(tool_call(tool, with_heartbeat(arguments, True))),
            calling(tool_call("send_message", {"message": "Saved."})),
        )

        response = client.agents.messages.create(agent.id, messages=HELLO)

        requests = script.requests()
        assert len(requests) == 2
        second = model_messages(requests[1])
        assert second[-1]["role"] == "user"
        assert second[-1]["content"] == HEARTBEAT_TEXT
        assert [m.content for m in response.messages if isinstance(m, AssistantMessage)] == [
            "Saved."
        ]
        assert block_value(client, agent.id) == expected
        listed = client.agents.messages.list(agent.id, order="asc").items
        assert [m.content for m in listed if isinstance(m, UserMessage)] == ["Hello"]
        assert "automated system message" not in json.dumps(
            [m.model_dump(mode="json") for m in listed]
        )

    def test_without_heartbeat_or_rules_the_turn_ends_after_the_tool(
        self, client: Letta, script: ScriptedLlm, agent_type: AgentType
    ) -> None:
        agent = create_agent(client, agent_type=agent_type, include_base_tool_rules=False)
        assert agent.tool_rules in (None, [])
        tool, arguments, expected = MEMORY_EDIT[agent_type]
        script.enqueue(
            calling(tool_call(tool, with_heartbeat(arguments, False))),
            reply("This answer must not be asked for."),
        )

        response = client.agents.messages.create(agent.id, messages=HELLO)

        assert len(script.requests()) == 1
        assert [m.message_type for m in response.messages] == [
            "tool_call_message",
            "tool_return_message",
        ]
        assert response.stop_reason.stop_reason == "end_turn"
        assert block_value(client, agent.id) == expected

    def test_with_heartbeat_and_no_rules_the_loop_continues(
        self, client: Letta, script: ScriptedLlm, agent_type: AgentType
    ) -> None:
        agent = create_agent(client, agent_type=agent_type, include_base_tool_rules=False)
        tool, arguments, _ = MEMORY_EDIT[agent_type]
        script.enqueue(
            calling(tool_call(tool, with_heartbeat(arguments, True))),
            calling(tool_call("send_message", {"message": "Saved."})),
        )

        response = client.agents.messages.create(agent.id, messages=HELLO)

        assert len(script.requests()) == 2
        assert [m.content for m in response.messages if isinstance(m, AssistantMessage)] == [
            "Saved."
        ]


class TestReactAgent:
    def test_react_agent_has_no_base_tools(self, client: Letta, script: ScriptedLlm) -> None:
        agent = create_agent(client, agent_type="react_agent")
        script.enqueue(reply("Hi"))

        client.agents.messages.create(agent.id, messages=HELLO)

        assert client.agents.retrieve(agent.id, include=["agent.tools"]).tools == []
        assert model_tools(script.requests()[0]) == {}


class TestToolRules:
    def test_exit_loop_stops_after_the_tool(self, client: Letta, script: ScriptedLlm) -> None:
        agent = create_agent(
            client, tool_rules=[{"type": "exit_loop", "tool_name": "memory_insert"}]
        )
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(calling(tool_call("memory_insert", insert)), reply("Not asked for."))

        response = client.agents.messages.create(agent.id, messages=HELLO)

        assert [m.message_type for m in response.messages] == [
            "tool_call_message",
            "tool_return_message",
        ]
        assert response.stop_reason.stop_reason == "tool_rule"
        assert len(script.requests()) == 1
        assert block_value(client, agent.id) == "Name: Ada\nLikes tea"

    def test_max_steps_stops_a_model_that_keeps_calling_tools(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        script.enqueue(
            *(
                calling(tool_call("memory_insert", {"label": "human", "new_string": f"Fact {i}"}))
                for i in range(3)
            )
        )

        response = client.agents.messages.create(agent.id, messages=HELLO, max_steps=2)

        assert response.stop_reason.stop_reason == "max_steps"
        assert len(script.requests()) == 2
        assert response.usage.step_count == 2
        assert block_value(client, agent.id) == "Name: Ada\nFact 0\nFact 1"
        assert response.usage.run_ids is not None
        run = client.runs.retrieve(response.usage.run_ids[0])
        assert run.stop_reason == "max_steps"

    def test_run_first_forces_that_tool_in_the_first_request(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = create_agent(
            client, tool_rules=[{"type": "run_first", "tool_name": "conversation_search"}]
        )
        script.enqueue(
            calling(tool_call("conversation_search", {"query": "anything"})), reply("Done.")
        )

        response = client.agents.messages.create(agent.id, messages=HELLO)

        first, second = script.requests()
        assert first["tool_choice"] == "required"
        assert set(model_tools(first)) == {"conversation_search"}
        assert second.get("tool_choice") != "required"
        assert set(model_tools(second)) == {
            "conversation_search",
            "memory_insert",
            "memory_replace",
        }
        assert response.stop_reason.stop_reason == "end_turn"

    def test_requires_approval_pauses_before_running_the_tool(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = create_agent(
            client, tool_rules=[{"type": "requires_approval", "tool_name": "memory_insert"}]
        )
        insert = {"label": "human", "new_string": "Likes tea"}
        call = tool_call("memory_insert", insert)
        script.enqueue(calling(call), reply("Not asked for."))

        response = client.agents.messages.create(agent.id, messages=HELLO)

        assert [m.message_type for m in response.messages] == ["approval_request_message"]
        request = response.messages[0]
        assert isinstance(request, ApprovalRequestMessage)
        assert request.tool_call.name == "memory_insert"
        assert request.tool_call.tool_call_id == call["id"]
        assert request.tool_call.arguments is not None
        assert json.loads(request.tool_call.arguments) == insert
        assert response.stop_reason.stop_reason == "requires_approval"
        assert len(script.requests()) == 1
        assert block_value(client, agent.id) == HUMAN_VALUE


class TestClientTools:
    def test_client_tool_call_pauses_for_the_client(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        call = tool_call("ask_user", {"question": "Tea or coffee?"})
        script.enqueue(calling(call), reply("Not asked for."))

        response = client.agents.messages.create(agent.id, messages=HELLO, client_tools=[ASK_USER])

        assert [m.message_type for m in response.messages] == ["approval_request_message"]
        request = response.messages[0]
        assert isinstance(request, ApprovalRequestMessage)
        assert request.tool_call.name == "ask_user"
        assert request.tool_call.tool_call_id == call["id"]
        assert response.stop_reason.stop_reason == "requires_approval"
        assert len(script.requests()) == 1

    def test_client_tools_are_offered_to_the_model(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(reply("No question needed."))

        client.agents.messages.create(agent.id, messages=HELLO, client_tools=[ASK_USER])

        tools = model_tools(script.requests()[0])
        assert "ask_user" in tools, f"the model was offered only {sorted(tools)}"
        assert tools["ask_user"]["required"] == ["question"]

    def test_new_message_while_approval_is_pending_is_409(
        self, http: httpx.Client, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(calling(tool_call("ask_user", {"question": "Tea?"})))
        paused = client.agents.messages.create(agent.id, messages=HELLO, client_tools=[ASK_USER])
        assert paused.stop_reason.stop_reason == "requires_approval"

        response = http.post(f"/v1/agents/{agent.id}/messages", json={"input": "Never mind"})

        assert response.status_code == 409, response.text
        assert "waiting for approval" in str(response.json().get("detail"))
        assert len(script.requests()) == 1

"""The agent loop of a letta_v1_agent through `agents.messages.create`: plain replies,
memory tools and their effect on blocks, failing tools, archival memory, conversation
search, and the system prompt the model is sent (letta-api.md §1.4, §2.5, §2.6, §3.1,
§3.3, §3.6)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from letta_client import Letta
from letta_client.types import ToolReturnMessage
from letta_client.types.agents import (
    AssistantMessage,
    SystemMessage,
    ToolCallMessage,
)
from letta_client.types.agents.letta_response import LettaResponse

from ._support import (
    ScriptedLlm,
    calling,
    is_id,
    model_messages,
    new_agent,
    reply,
    system_prompt,
    tool_call,
)

HUMAN_VALUE = "Name: Ada"
HUMAN_BLOCK: Any = {"label": "human", "value": HUMAN_VALUE}


def say(client: Letta, agent_id: str, text: str = "Hello") -> LettaResponse:
    return client.agents.messages.create(agent_id, messages=[{"role": "user", "content": text}])


def kinds(response: LettaResponse) -> list[str | None]:
    return [message.message_type for message in response.messages]


def block_value(client: Letta, agent_id: str, label: str = "human") -> str:
    return client.agents.blocks.retrieve(label, agent_id=agent_id).value


def tool_messages(body: dict[str, object]) -> list[dict[str, object]]:
    return [m for m in model_messages(body) if m["role"] == "tool"]


def packaged(content: object) -> dict[str, Any]:
    """A tool result as the model gets it: `{"status", "message", "time"}` (§3.3)."""
    assert isinstance(content, str), f"tool content is not text: {content!r}"
    parsed = json.loads(content)
    assert isinstance(parsed, dict), f"tool content is not a JSON object: {content!r}"
    assert set(parsed) == {"status", "message", "time"}, parsed
    return parsed


class TestPlainReply:
    def test_reply_without_tools_is_one_assistant_message(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        script.enqueue(reply("Hello, Ada!", usage={"prompt_tokens": 120, "completion_tokens": 7}))

        response = say(client, agent.id, "Hi there")

        assert kinds(response) == ["assistant_message"]
        message = response.messages[0]
        assert isinstance(message, AssistantMessage)
        assert message.content == "Hello, Ada!"
        assert is_id("message", message.id), message.id
        assert response.stop_reason.stop_reason == "end_turn"
        usage = response.usage
        assert usage.step_count == 1
        assert usage.prompt_tokens == 120
        assert usage.completion_tokens == 7
        assert usage.total_tokens == 127
        assert usage.run_ids is not None
        assert len(usage.run_ids) == 1, usage.run_ids
        assert is_id("run", usage.run_ids[0]), usage.run_ids
        assert message.run_id == usage.run_ids[0]

    def test_model_gets_the_user_message_last(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        script.enqueue(reply("Fine."))

        say(client, agent.id, "How are you?")

        requests = script.requests()
        assert len(requests) == 1
        last = model_messages(requests[0])[-1]
        assert last["role"] == "user"
        assert last["content"] == "How are you?"

    def test_history_carries_into_the_next_turn(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        script.enqueue(reply("First answer"), reply("Second answer"))

        say(client, agent.id, "First question")
        say(client, agent.id, "Second question")

        second = model_messages(script.requests()[1])
        tail = [(m["role"], m["content"]) for m in second[1:]]
        assert tail == [
            ("user", "First question"),
            ("assistant", "First answer"),
            ("user", "Second question"),
        ]


# (tool, arguments, tools attached by name at create, the block's value afterwards)
MEMORY_EDITS: list[tuple[str, dict[str, object], list[str], str]] = [
    (
        "memory_replace",
        {"label": "human", "old_string": "Ada", "new_string": "Grace"},
        [],
        "Name: Grace",
    ),
    (
        "memory_insert",
        {"label": "human", "new_string": "Likes tea", "insert_line": -1},
        [],
        "Name: Ada\nLikes tea",
    ),
    (
        "memory_rethink",
        {"label": "human", "new_memory": "Name: Grace\nRole: admiral"},
        ["memory_rethink"],
        "Name: Grace\nRole: admiral",
    ),
]


class TestMemoryTools:
    @pytest.mark.parametrize(
        ("tool", "arguments", "attach", "expected"),
        MEMORY_EDITS,
        ids=[edit[0] for edit in MEMORY_EDITS],
    )
    def test_tool_call_edits_the_block_then_the_model_replies(
        self,
        client: Letta,
        script: ScriptedLlm,
        tool: str,
        arguments: dict[str, object],
        attach: list[str],
        expected: str,
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK], tools=attach)
        call = tool_call(tool, arguments)
        script.enqueue(calling(call), reply("Memory updated."))

        response = say(client, agent.id, "Please remember this")

        assert kinds(response) == ["tool_call_message", "tool_return_message", "assistant_message"]
        call_message, return_message, final = response.messages
        assert isinstance(call_message, ToolCallMessage)
        assert call_message.tool_call.name == tool
        assert call_message.tool_call.tool_call_id == call["id"]
        assert call_message.tool_call.arguments is not None
        assert json.loads(call_message.tool_call.arguments) == arguments
        assert isinstance(return_message, ToolReturnMessage)
        assert return_message.status == "success", return_message.tool_return
        assert return_message.tool_call_id == call["id"]
        assert isinstance(final, AssistantMessage)
        assert final.content == "Memory updated."
        assert response.stop_reason.stop_reason == "end_turn"
        assert response.usage.step_count == 2
        assert block_value(client, agent.id) == expected

        requests = script.requests()
        assert len(requests) == 2
        (result,) = tool_messages(requests[1])
        assert result["tool_call_id"] == call["id"]
        assert packaged(result["content"])["status"] == "OK"

    def test_failing_tool_returns_lettas_error_and_the_loop_goes_on(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        edit = {"label": "human", "old_string": "Zed", "new_string": "Q"}
        call = tool_call("memory_replace", edit)
        script.enqueue(calling(call), reply("That name was not there."))

        response = say(client, agent.id, "Rename Zed")

        assert kinds(response) == ["tool_call_message", "tool_return_message", "assistant_message"]
        returned = response.messages[1]
        assert isinstance(returned, ToolReturnMessage)
        error_text = (
            "No replacement was performed, old_string `Zed` did not appear verbatim in memory "
            "block with label `human`."
        )
        assert returned.status == "error"
        assert returned.tool_return == error_text
        final = response.messages[2]
        assert isinstance(final, AssistantMessage)
        assert final.content == "That name was not there."
        assert response.stop_reason.stop_reason == "end_turn"
        assert block_value(client, agent.id) == HUMAN_VALUE

        requests = script.requests()
        assert len(requests) == 2
        (result,) = tool_messages(requests[1])
        sent = packaged(result["content"])
        assert sent["status"] == "Failed"
        assert sent["message"] == error_text

    def test_read_only_block_is_not_edited(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(
            client, memory_blocks=[{"label": "human", "value": HUMAN_VALUE, "read_only": True}]
        )
        call = tool_call("memory_insert", {"label": "human", "new_string": "Likes tea"})
        script.enqueue(calling(call), reply("I cannot."))

        response = say(client, agent.id, "Remember tea")

        returned = response.messages[1]
        assert isinstance(returned, ToolReturnMessage)
        assert returned.status == "error"
        assert returned.tool_return == "Error This block is read-only and cannot be edited."
        assert block_value(client, agent.id) == HUMAN_VALUE

    def test_archival_insert_then_search_finds_the_content(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(
            client,
            memory_blocks=[HUMAN_BLOCK],
            tools=["archival_memory_insert", "archival_memory_search"],
        )
        fact = "The lighthouse keeper's cat is called Biscuit."
        script.enqueue(
            calling(tool_call("archival_memory_insert", {"content": fact})),
            calling(tool_call("archival_memory_search", {"query": "lighthouse cat"})),
            reply("Biscuit."),
        )

        response = say(client, agent.id, "Remember the cat, then look it up")

        assert kinds(response) == [
            "tool_call_message",
            "tool_return_message",
            "tool_call_message",
            "tool_return_message",
            "assistant_message",
        ]
        inserted, found = response.messages[1], response.messages[3]
        assert isinstance(inserted, ToolReturnMessage)
        assert inserted.status == "success", inserted.tool_return
        assert isinstance(found, ToolReturnMessage)
        assert found.status == "success", found.tool_return
        results = json.loads(found.tool_return)
        assert [result["content"] for result in results] == [fact]
        assert response.stop_reason.stop_reason == "end_turn"

    def test_conversation_search_finds_an_earlier_user_message(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        earlier = "My favourite colour is periwinkle."
        script.enqueue(
            reply("Noted."),
            calling(tool_call("conversation_search", {"query": "periwinkle", "roles": ["user"]})),
            reply("You said periwinkle."),
        )
        say(client, agent.id, earlier)

        response = say(client, agent.id, "What is my favourite colour?")

        assert kinds(response) == ["tool_call_message", "tool_return_message", "assistant_message"]
        found = response.messages[1]
        assert isinstance(found, ToolReturnMessage)
        assert found.status == "success", found.tool_return
        assert earlier in found.tool_return
        assert "What is my favourite colour?" not in found.tool_return


class TestSystemPrompt:
    def test_first_request_shows_the_memory_blocks(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        script.enqueue(reply("Hi"))

        say(client, agent.id)

        prompt = system_prompt(script.requests()[0])
        assert "<memory_blocks>" in prompt
        assert "</memory_blocks>" in prompt
        assert "<human>" in prompt
        assert f"<value>\n{HUMAN_VALUE}\n</value>\n</human>" in prompt
        assert f"- chars_current={len(HUMAN_VALUE)}" in prompt
        assert f"- AGENT_ID: {agent.id}" in prompt

    def test_memory_edit_shows_in_the_next_request(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        edit = {"label": "human", "old_string": "Ada", "new_string": "Grace"}
        script.enqueue(calling(tool_call("memory_replace", edit)), reply("Done"), reply("Hi"))

        say(client, agent.id, "Call me Grace")
        say(client, agent.id, "Who am I?")

        first, after_edit, next_turn = (system_prompt(r) for r in script.requests())
        assert "<value>\nName: Ada\n</value>" in first
        for prompt in (after_edit, next_turn):
            assert "<value>\nName: Grace\n</value>" in prompt
            assert "Name: Ada" not in prompt

    def test_block_update_through_the_api_shows_in_the_next_turn(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        script.enqueue(reply("Hi"), reply("Hi again"))
        say(client, agent.id)

        client.agents.blocks.update("human", agent_id=agent.id, value="Name: Hopper")
        say(client, agent.id)

        prompt = system_prompt(script.requests()[1])
        assert "<value>\nName: Hopper\n</value>" in prompt
        assert "Name: Ada" not in prompt

    def test_history_starts_with_the_system_message_the_model_saw(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        script.enqueue(reply("Hi"))
        say(client, agent.id)

        history = list(client.agents.messages.list(agent.id, order="asc"))

        assert history, "no messages after a turn"
        first = history[0]
        assert isinstance(first, SystemMessage), first
        assert first.content == system_prompt(script.requests()[0])
        assert [m.message_type for m in history[1:]] == ["user_message", "assistant_message"]

    def test_new_agent_has_a_compiled_system_message(self, client: Letta) -> None:
        # §2.1: `message_ids[0]` is the compiled system message, from creation on.
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])

        history = list(client.agents.messages.list(agent.id, order="asc"))
        message_ids = client.agents.retrieve(agent.id).message_ids

        assert [m.message_type for m in history] == ["system_message"]
        first = history[0]
        assert isinstance(first, SystemMessage)
        assert f"<value>\n{HUMAN_VALUE}\n</value>" in first.content
        assert message_ids == [first.id]

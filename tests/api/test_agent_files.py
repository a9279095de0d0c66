"""Agent files: export in Letta's format, export -> import round trips that behave the
same, and importing a file Letta 0.16 made (letta-api.md §1.2; Letta's
letta/schemas/agent_file.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from letta_client import BadRequestError, Letta, NotFoundError, UnprocessableEntityError
from letta_client.types import AgentState

from ._support import (
    MODEL,
    ScriptedLlm,
    calling,
    error_detail,
    export_agent_file,
    import_agent_file,
    is_id,
    model_messages,
    model_tools,
    new_agent,
    reply,
    system_prompt,
    tool_call,
    unique,
)

LETTA_FILE: Final = Path(__file__).parent.parent / "fixtures" / "letta-0.16-harbor.af"
PAGE_ALL: Final = 1_000
FILE_KEYS: Final = {
    "agents", "groups", "blocks", "files", "sources", "tools", "mcp_servers", "skills",
    "metadata", "created_at",
}  # fmt: skip
# Letta's Tool model forbids any other field, so an export carries exactly these.
LETTA_TOOL_KEYS: Final = {
    "id", "tool_type", "description", "source_type", "name", "tags", "source_code",
    "json_schema", "args_json_schema", "return_char_limit", "pip_requirements",
    "npm_requirements", "default_requires_approval", "enable_parallel_execution",
    "created_by_id", "last_updated_by_id", "metadata_", "project_id",
}  # fmt: skip


def tool_source(name: str) -> str:
    return (
        f"def {name}(text: str) -> str:\n"
        '    """Shout the text.\n\n'
        "    Args:\n"
        "        text: What to shout.\n"
        '    """\n'
        "    return text.upper()\n"
    )


def full(client: Letta, agent_id: str) -> AgentState:
    return client.agents.retrieve(
        agent_id, include=["agent.blocks", "agent.tools", "agent.tags", "agent.secrets"]
    )


def history(client: Letta, agent_id: str) -> list[Any]:
    return client.agents.messages.list(agent_id, order="asc", limit=PAGE_ALL).items


def shown(items: list[Any]) -> list[tuple[object, ...]]:
    """What a client sees of a history, without ids and times."""
    return [
        (
            item.message_type,
            getattr(item, "content", None),
            getattr(item, "reasoning", None),
            getattr(getattr(item, "tool_call", None), "arguments", None),
            getattr(item, "tool_return", None),
        )
        for item in items
        if item.message_type != "system_message"
    ]


def memory_section(prompt: str) -> str:
    match = re.search(r"<memory_blocks>.*</memory_blocks>", prompt, re.DOTALL)
    assert match is not None, f"no memory blocks in {prompt[:300]!r}"
    return match.group(0)


def agent_with_history(client: Letta, script: ScriptedLlm) -> AgentState:
    """An agent with two blocks, a custom tool, a rule, tags and one turn that edits
    memory."""
    name = unique("shout").replace("-", "_")
    client.tools.upsert(source_code=tool_source(name))
    agent = client.agents.create(
        name=unique("exported"),
        model=MODEL,
        memory_blocks=[
            {"label": "human", "value": "Name: Ada", "limit": 5000},
            {"label": "persona", "value": "A careful helper.", "read_only": True},
        ],
        tools=[name],
        tool_rules=[{"type": "continue_loop", "tool_name": name}],
        tags=[unique("tag")],
        system="You are a test agent.",
    )
    insert = {"label": "human", "new_string": "Likes tea"}
    script.enqueue(
        calling(tool_call("memory_insert", insert), content="Noting that."),
        reply("Noted.", reasoning="The user likes tea."),
    )
    client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "I like tea"}])
    return full(client, agent.id)


class TestExport:
    def test_is_a_letta_agent_file(self, client: Letta, script: ScriptedLlm) -> None:
        agent = agent_with_history(client, script)

        exported = export_agent_file(client, agent.id)

        assert set(exported) == FILE_KEYS
        [file_agent] = exported["agents"]
        assert file_agent["id"] == "agent-0"
        assert file_agent["name"] == agent.name
        assert file_agent["system"] == "You are a test agent."
        assert file_agent["llm_config"]["handle"] == MODEL
        assert file_agent["tags"] == agent.tags
        assert file_agent["include_base_tools"] is False
        block_ids = {block["id"]: block for block in exported["blocks"]}
        assert sorted(block["label"] for block in exported["blocks"]) == ["human", "persona"]
        assert set(file_agent["block_ids"]) == set(block_ids)
        assert all(re.fullmatch(r"block-\d+", block_id) for block_id in block_ids)
        tools = {tool["id"]: tool for tool in exported["tools"]}
        assert set(file_agent["tool_ids"]) == set(tools)
        for tool in tools.values():
            assert set(tool) == LETTA_TOOL_KEYS
        custom = [tool for tool in tools.values() if tool["tool_type"] == "custom"]
        assert [tool["source_code"] for tool in custom] == [tool_source(custom[0]["name"])]

    def test_messages_are_the_in_context_ones_in_lettas_shape(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = agent_with_history(client, script)

        [file_agent] = export_agent_file(client, agent.id)["agents"]

        messages = file_agent["messages"]
        assert [m["id"] for m in messages] == [f"message-{i}" for i in range(len(messages))]
        assert file_agent["in_context_message_ids"] == [m["id"] for m in messages]
        assert len(messages) == len(agent.message_ids or [])
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
        assert all(m["agent_id"] == "agent-0" for m in messages)
        call = messages[2]["tool_calls"][0]
        assert call["type"] == "function"
        assert call["function"]["name"] == "memory_insert"
        assert messages[3]["tool_call_id"] == call["id"]
        assert messages[3]["tool_returns"][0]["status"] == "success"
        assert {"type": "reasoning", "is_native": True, "reasoning": "The user likes tea.",
                "signature": None} in messages[4]["content"]  # fmt: skip

    def test_secrets_travel_by_name_only(self, client: Letta) -> None:
        agent = client.agents.create(model=MODEL, secrets={"API_KEY": "s3cret"})

        [file_agent] = export_agent_file(client, agent.id)["agents"]

        assert file_agent["secrets"] == {"API_KEY": ""}
        assert file_agent["tool_exec_environment_variables"] == {"API_KEY": ""}
        [copy_id] = import_agent_file(
            client, json.dumps(export_agent_file(client, agent.id)), secrets='{"API_KEY": "k"}'
        )
        assert [(s.key, s.value) for s in full(client, copy_id).secrets or []] == [("API_KEY", "k")]

    def test_scrub_messages_leaves_the_history_out(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = agent_with_history(client, script)

        [file_agent] = export_agent_file(client, agent.id, scrub_messages=True)["agents"]

        assert file_agent["messages"] == []
        assert file_agent["in_context_message_ids"] == []

    def test_is_indented_json(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)

        response = http.get(f"/v1/agents/{agent.id}/export")

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.text.startswith('{\n  "agents": [')

    def test_unknown_agent_is_not_found(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.agents.export_file("agent-00000000-0000-4000-8000-000000000000")

    def test_malformed_agent_id_is_unprocessable(self, client: Letta) -> None:
        with pytest.raises(UnprocessableEntityError):
            client.agents.export_file("agent-nope")

    def test_legacy_format_is_refused(self, client: Letta) -> None:
        agent = new_agent(client)
        with pytest.raises(BadRequestError) as caught:
            client.agents.export_file(agent.id, use_legacy_format=True)
        assert error_detail(caught.value) == "Legacy format is not supported"

    def test_another_conversation_is_refused(self, client: Letta) -> None:
        agent = new_agent(client)
        with pytest.raises(BadRequestError) as caught:
            client.agents.export_file(agent.id, conversation_id="conv-x")
        assert "conversation" in str(error_detail(caught.value))


class TestRoundTrip:
    def test_copy_has_the_same_memory_tools_rules_and_tags(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        original = agent_with_history(client, script)

        [copy_id] = import_agent_file(client, json.dumps(export_agent_file(client, original.id)))
        copy = full(client, copy_id)

        assert is_id("agent", copy_id)
        assert copy_id != original.id
        assert copy.name == f"{original.name}_copy"
        assert copy.system == original.system
        assert copy.agent_type == original.agent_type
        assert copy.llm_config == original.llm_config
        assert copy.tags == original.tags
        assert copy.tool_rules == original.tool_rules
        assert [(b.label, b.value, b.limit, b.read_only, b.description) for b in copy.blocks] == [
            (b.label, b.value, b.limit, b.read_only, b.description) for b in original.blocks
        ]
        assert {b.id for b in copy.blocks}.isdisjoint({b.id for b in original.blocks})
        # Tools are matched by name: the copy uses the very same tools.
        assert [t.id for t in copy.tools] == [t.id for t in original.tools]

    def test_copy_shows_the_same_history(self, client: Letta, script: ScriptedLlm) -> None:
        original = agent_with_history(client, script)

        [copy_id] = import_agent_file(client, json.dumps(export_agent_file(client, original.id)))

        copied = history(client, copy_id)
        assert shown(copied) == shown(history(client, original.id))
        assert {item.id for item in copied}.isdisjoint(original.message_ids or [])
        message_ids = client.agents.retrieve(copy_id).message_ids or []
        assert len(message_ids) == len(original.message_ids or [])
        assert message_ids[0] == copied[0].id
        assert f"- AGENT_ID: {copy_id}" in copied[0].content

    def test_copy_sends_the_model_what_the_original_does(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        original = agent_with_history(client, script)
        [copy_id] = import_agent_file(client, json.dumps(export_agent_file(client, original.id)))
        script.clear()
        script.enqueue(reply("Tea, then."), reply("Tea, then."))

        for agent_id in (original.id, copy_id):
            client.agents.messages.create(
                agent_id, messages=[{"role": "user", "content": "What do I like?"}]
            )

        sent_original, sent_copy = script.requests()
        assert model_messages(sent_copy)[1:] == model_messages(sent_original)[1:]
        assert model_tools(sent_copy) == model_tools(sent_original)
        assert memory_section(system_prompt(sent_copy)) == memory_section(
            system_prompt(sent_original)
        )
        assert "Likes tea" in memory_section(system_prompt(sent_copy))


class TestImportLettaFile:
    """tests/fixtures/letta-0.16-harbor.af follows what Letta 0.16 writes: two agents of
    a sleeptime group sharing a block, built-in tools without source, a custom tool,
    reasoning, tool returns with stdout, a hidden heartbeat, blanked secrets."""

    def imported(self, client: Letta, **options: Any) -> tuple[AgentState, AgentState]:
        ids = import_agent_file(client, LETTA_FILE.read_bytes(), **options)
        assert len(ids) == 2
        harbor, sleeptime = (full(client, agent_id) for agent_id in ids)
        return harbor, sleeptime

    def test_every_agent_is_created_with_fresh_ids(self, client: Letta) -> None:
        harbor, sleeptime = self.imported(client)

        assert is_id("agent", harbor.id)
        assert is_id("agent", sleeptime.id)
        assert (harbor.name, sleeptime.name) == ("harbor_copy", "harbor-sleeptime_copy")
        assert (harbor.agent_type, sleeptime.agent_type) == ("memgpt_v2_agent", "sleeptime_agent")
        assert harbor.timezone == "Europe/Berlin"
        assert harbor.metadata == {"team": "support"}
        assert sorted(harbor.tags) == ["bikes", "support"]
        assert harbor.llm_config.handle == "openai/gpt-4o-mini"
        assert sleeptime.llm_config.api_model_endpoint_type == "anthropic"

    def test_blocks_are_new_and_shared_as_in_the_file(self, client: Letta) -> None:
        harbor, sleeptime = self.imported(client)

        blocks = {block.label: block for block in harbor.blocks}
        assert [block.label for block in harbor.blocks] == ["human", "persona", "shop_policies"]
        assert blocks["human"].value == "Name: Priya\nRides: a blue cargo bike"
        assert blocks["persona"].read_only is True
        [shared] = sleeptime.blocks
        assert shared.id == blocks["shop_policies"].id
        # The file's block is over its limit of 500; the limit grows to fit the value.
        assert shared.limit == len(shared.value) == 960

    def test_tools_are_matched_by_name_or_created(self, client: Letta) -> None:
        harbor, sleeptime = self.imported(client)

        tools = {tool.name: tool for tool in harbor.tools}
        assert set(tools) == {"conversation_search", "lookup_order", "open_files", "send_message"}
        assert tools["send_message"].tool_type == "letta_core"
        assert tools["lookup_order"].tool_type == "custom"
        assert (tools["lookup_order"].source_code or "").startswith("def lookup_order(")
        assert tools["open_files"].tool_type == "letta_files_core"
        [memory_insert] = sleeptime.tools
        assert memory_insert.name == "memory_insert"
        assert client.tools.list(name="memory_insert").items[0].id == memory_insert.id
        rules = [(rule.type, rule.tool_name) for rule in harbor.tool_rules or []]
        assert ("exit_loop", "send_message") in rules

    def test_secret_values_come_from_the_request(self, client: Letta) -> None:
        harbor, _ = self.imported(client, secrets=json.dumps({"ORDER_API_KEY": "k-1"}))

        secrets = {secret.key: secret.value for secret in harbor.secrets or []}
        assert secrets == {"ORDER_API_KEY": "k-1", "SHOP_ID": ""}

    def test_history_reads_as_letta_shows_it(self, client: Letta) -> None:
        harbor, sleeptime = self.imported(client)

        items = history(client, harbor.id)
        assert [item.message_type for item in items] == [
            "system_message",
            "user_message",  # the login message, outside the context window
            "user_message",
            "reasoning_message",
            "tool_call_message",
            "tool_return_message",
            "reasoning_message",
            "assistant_message",
            "tool_return_message",
        ]
        assert items[2].content == "Where is my order 42?"
        assert items[5].tool_return == '{"order": 42, "status": "shipped", "carrier": "DHL"}'
        assert items[5].stdout == ["looked up 42"]
        assert items[7].content == "Order 42 has shipped with DHL."
        assert [item.message_type for item in history(client, sleeptime.id)] == ["system_message"]

    def test_context_window_skips_what_the_file_left_out(self, client: Letta) -> None:
        harbor, _ = self.imported(client)

        message_ids = harbor.message_ids or []
        items = history(client, harbor.id)
        login_id = items[1].id
        assert message_ids[0] == items[0].id
        assert login_id not in message_ids
        # file: system + 6 in-context messages (the hidden heartbeat among them).
        assert len(message_ids) == 7
        assert f"- AGENT_ID: {harbor.id}" in items[0].content

    def test_imported_agent_takes_a_turn_on_its_history(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        [harbor_id, _] = import_agent_file(client, LETTA_FILE.read_bytes(), model=MODEL)
        script.enqueue(calling(tool_call("send_message", {"message": "Still with DHL."})))

        response = client.agents.messages.create(
            harbor_id, messages=[{"role": "user", "content": "And now?"}]
        )

        assert response.stop_reason.stop_reason == "end_turn"
        sent = model_messages(script.requests()[0])
        assert [m["role"] for m in sent] == [
            "system", "user", "assistant", "tool", "user", "assistant", "tool", "user",
        ]  # fmt: skip
        assert "call_lookup_1" in str(sent[2]["tool_calls"])
        assert "hidden from the user" in str(sent[4]["content"])
        assert "Harbor" in system_prompt(script.requests()[0])

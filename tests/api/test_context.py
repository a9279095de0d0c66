"""`GET /v1/agents/{id}/context`: Letta's ContextWindowOverview, which letta-code's
`/context` draws (letta-api.md §1.2): each section of the system message counted once,
messages in Letta's shape, tools as OpenAI function definitions."""

from __future__ import annotations

from typing import Any

import httpx
from letta_client import Letta

from ._support import ScriptedLlm, new_agent, reply

TOKEN_FIELDS = (
    "num_tokens_system",
    "num_tokens_core_memory",
    "num_tokens_memory_filesystem",
    "num_tokens_tool_usage_rules",
    "num_tokens_directories",
    "num_tokens_external_memory_summary",
    "num_tokens_summary_memory",
    "num_tokens_messages",
    "num_tokens_functions_definitions",
)
CHARS_PER_TOKEN = 4


def overview(http: httpx.Client, agent_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/agents/{agent_id}/context")
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


def test_sections_of_the_system_message_are_counted_once(client: Letta, http: httpx.Client) -> None:
    agent = client.agents.create(
        model="openai/gpt-4o-mini",
        agent_type="memgpt_v2_agent",
        system="You are a careful test agent.",
        memory_blocks=[{"label": "human", "value": "Name: Ada"}],
    )

    body = overview(http, agent.id)

    assert body["system_prompt"] == "You are a careful test agent."
    assert body["core_memory"].startswith("<memory_blocks>")
    assert body["core_memory"].endswith("</memory_blocks>")
    assert "Name: Ada" in body["core_memory"]
    assert body["tool_usage_rules"].startswith("<tool_usage_rules>")
    assert body["external_memory_summary"].startswith("<memory_metadata>")
    assert body["num_tokens_system"] == len(body["system_prompt"]) // CHARS_PER_TOKEN
    assert body["num_tokens_core_memory"] == len(body["core_memory"]) // CHARS_PER_TOKEN
    assert body["context_window_size_current"] == sum(body[field] for field in TOKEN_FIELDS)
    assert body["context_window_size_max"] == agent.llm_config.context_window


def test_tools_are_openai_function_definitions(client: Letta, http: httpx.Client) -> None:
    agent = new_agent(client)
    tools = client.agents.retrieve(agent.id, include=["agent.tools"]).tools

    body = overview(http, agent.id)

    assert {d["type"] for d in body["functions_definitions"]} == {"function"}
    assert sorted(d["function"]["name"] for d in body["functions_definitions"]) == sorted(
        tool.name or "" for tool in tools
    )
    assert body["num_tokens_functions_definitions"] > 0


def test_messages_are_in_lettas_shape(
    client: Letta, http: httpx.Client, script: ScriptedLlm
) -> None:
    agent = new_agent(client)
    script.enqueue(reply("Hello Ada"))
    client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "Hi"}])

    body = overview(http, agent.id)

    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"] == [{"type": "text", "text": "Hi", "signature": None}]
    assert messages[2]["content"][-1]["text"] == "Hello Ada"
    assert [m["id"] for m in messages] == client.agents.retrieve(agent.id).message_ids
    assert body["num_messages"] == 3
    assert body["num_recall_memory"] == 3
    assert body["num_tokens_messages"] == len("Hi" + "Hello Ada") // CHARS_PER_TOKEN


def test_unknown_agent_is_not_found(http: httpx.Client) -> None:
    response = http.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000/context")
    assert response.status_code == 404

"""Shared constants and builders for the API tests."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
from letta_client import APIStatusError, Letta, Omit, omit
from letta_client.types import AgentState, AgentType, CreateBlockParam

MODEL: Final = "openai/gpt-4o-mini"
UUID4_RE: Final = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"

# letta-api.md §3.2: what `include_base_tools=true` attaches, by agent type.
LETTA_V1_BASE_TOOLS: Final = frozenset({"conversation_search", "memory_insert", "memory_replace"})
MEMGPT_BASE_TOOLS: Final = frozenset(
    {
        "send_message",
        "conversation_search",
        "core_memory_append",
        "core_memory_replace",
        "memory",
        "memory_apply_patch",
    }
)


class KelpieStarter(Protocol):
    """What the `kelpie_launcher` fixture offers: start one more server, get its URL."""

    data_dirs: dict[str, Path]

    def start(
        self, extra_env: Mapping[str, str] | None = None, *, data_dir: Path | None = None
    ) -> str: ...

    def stop(self, base_url: str) -> None: ...

    def database_args(self, data_dir: Path) -> list[str]: ...


def unique(prefix: str) -> str:
    """A name that no other test, and no other xdist worker, will produce."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def is_id(prefix: str, value: str | None) -> bool:
    """Whether `value` is a Letta id, `<prefix>-<uuid4>`."""
    return value is not None and re.fullmatch(f"{prefix}-{UUID4_RE}", value) is not None


def new_agent(
    client: Letta,
    *,
    name: str | None = None,
    tags: list[str] | Omit = omit,
    memory_blocks: Iterable[CreateBlockParam] | Omit = omit,
    agent_type: AgentType | Omit = omit,
    include_base_tools: bool | Omit = omit,
    tools: list[str] | Omit = omit,
    tool_ids: list[str] | Omit = omit,
    block_ids: list[str] | Omit = omit,
    tool_rules: Iterable[Any] | Omit = omit,
) -> AgentState:
    """Creates an agent on the test model, with a unique name unless one is given."""
    return client.agents.create(
        name=name if name is not None else unique("agent"),
        model=MODEL,
        tags=tags,
        memory_blocks=memory_blocks,
        agent_type=agent_type,
        include_base_tools=include_base_tools,
        tools=tools,
        tool_ids=tool_ids,
        block_ids=block_ids,
        tool_rules=tool_rules,
    )


def stored_system_text(client: Letta, agent_id: str) -> str:
    """The agent's stored system message (the first of its history)."""
    first = next(iter(client.agents.messages.list(agent_id=agent_id, order="asc", limit=1)))
    assert first.message_type == "system_message"
    assert isinstance(first.content, str)
    return first.content


def error_detail(exc: APIStatusError) -> object:
    """The `detail` of an error body, after checking the body is a JSON object with one."""
    body = exc.response.json()
    assert isinstance(body, dict), f"error body is not a JSON object: {exc.response.text!r}"
    assert "detail" in body, f"error body has no 'detail': {body!r}"
    return body["detail"]


OPEN_ROUTES: Final = frozenset({"/v1/health", "/v1/health/", "/v1/ready"})


def assert_every_route_refused(http: httpx.Client, credentials: Mapping[str, str]) -> None:
    """Walks the whole route table (from the server's own OpenAPI document, read with
    `credentials`) without any: every route but health must answer 401, so a new route,
    one that runs code most of all, cannot forget auth."""
    schema = http.get("/openapi.json", headers=dict(credentials)).json()
    walked = []
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            response = http.request(method.upper(), concrete, json={})
            walked.append(f"{method.upper()} {path}")
            if path in OPEN_ROUTES:
                continue
            assert response.status_code == 401, f"{method.upper()} {path}: {response.text}"
            assert isinstance(response.json()["detail"], str), response.text
    assert "POST /v1/tools/run" in walked
    assert "POST /v1/agents/{agent_id}/tools/{tool_name}/run" in walked
    assert "POST /v1/admin/api-keys" in walked
    assert len(walked) >= 80, walked  # the table, not a stub of it


# --- The agent loop: scripted model answers and what the model was sent -----------------
# Entries in the fake LLM's format (tests/fakes/llm_server.py), for the `script` fixture.
# Imports stay inside the functions: the import block above belongs to other tests.


def tool_call(
    name: str, arguments: Mapping[str, object], *, call_id: str | None = None
) -> dict[str, object]:
    """One tool call of a scripted answer; its id is unique unless given."""
    import json

    return {"id": call_id or unique("call"), "name": name, "arguments": json.dumps(arguments)}


def calling(*calls: dict[str, object], **fields: object) -> dict[str, object]:
    """A scripted answer that calls tools; `fields` adds `content`, `delay_s`, `usage`, …"""
    return {"tool_calls": list(calls), **fields}


def reply(content: str, **fields: object) -> dict[str, object]:
    """A scripted answer with text and no tool calls."""
    return {"content": content, **fields}


def model_messages(body: Mapping[str, object]) -> list[dict[str, object]]:
    """The chat messages of one recorded model request."""
    messages = body["messages"]
    assert isinstance(messages, list), f"model request without messages: {body!r}"
    return messages


def system_prompt(body: Mapping[str, object]) -> str:
    """The system message the model was sent (the first message of the request)."""
    first = model_messages(body)[0]
    assert first["role"] == "system", f"the first model message is not the system: {first!r}"
    content = first["content"]
    assert isinstance(content, str), f"system content is not text: {content!r}"
    return content


def model_tools(body: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """The tools the model was offered: name -> the JSON schema of its parameters."""
    tools = body.get("tools") or []
    assert isinstance(tools, list), f"tools is not a list: {tools!r}"
    return {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}


class ScriptedLlm(Protocol):
    """What the `script` fixture offers (tests/conftest.py `LlmScript`)."""

    def enqueue(self, *entries: Mapping[str, object]) -> None: ...

    def clear(self) -> None: ...

    def requests(self) -> list[dict[str, object]]: ...


# --- Agent files ------------------------------------------------------------------------
# Imports stay inside the functions: the import block above belongs to other tests.


def import_agent_file(client: Letta, data: bytes | str, **options: Any) -> list[str]:
    """Uploads `data` as an agent file with the SDK; returns the new agents' ids."""
    import io

    raw = data.encode() if isinstance(data, str) else data
    upload = ("agent.af", io.BytesIO(raw), "application/json")
    return client.agents.import_file(file=upload, **options).agent_ids


def export_agent_file(client: Letta, agent_id: str, **options: Any) -> dict[str, Any]:
    """The agent's export, parsed."""
    import json

    exported = client.agents.export_file(agent_id, **options)
    parsed = json.loads(exported)
    assert isinstance(parsed, dict), f"an export is not a JSON object: {exported[:200]!r}"
    return parsed

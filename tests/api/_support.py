"""Shared constants and builders for the API tests."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

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

    def start(self, extra_env: Mapping[str, str] | None = None) -> str: ...


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
    )


def error_detail(exc: APIStatusError) -> object:
    """The `detail` of an error body, after checking the body is a JSON object with one."""
    body = exc.response.json()
    assert isinstance(body, dict), f"error body is not a JSON object: {exc.response.text!r}"
    assert "detail" in body, f"error body has no 'detail': {body!r}"
    return body["detail"]

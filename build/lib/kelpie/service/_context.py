"""An agent's context window, as Letta's `ContextWindowOverview` describes it
(`GET /v1/agents/{id}/context`; letta-code's `/context` draws its breakdown from it).

The system message is split into Letta's sections (base instructions, memory blocks,
tool rules, memory metadata) so each is counted once. Tokens are estimated at four
characters each: Kelpie ships no tokenizer per model.
"""

import json
from collections.abc import Sequence
from typing import Any, Final

from kelpie.env import Env
from kelpie.memory import archive_id_of
from kelpie.schemas import Message
from kelpie.service._agents import AgentService
from kelpie.service._letta_messages import letta_messages

CHARS_PER_TOKEN: Final = 4
# Top-level sections of a compiled system message, in Letta's tag names.
_SECTION_TAGS: Final = (
    "memory_blocks",
    "memory_filesystem",
    "tool_usage_rules",
    "directories",
    "memory_metadata",
)


def _tokens(text: str | None) -> int:
    return len(text or "") // CHARS_PER_TOKEN


def _tagged(text: str, tag: str, *, outside: tuple[int, int] | None = None) -> str | None:
    """The first `<tag>…</tag>` of `text`, tags included, that is not inside `outside`."""
    start = 0
    while (begin := text.find(f"<{tag}>", start)) != -1:
        if outside is not None and outside[0] < begin < outside[1]:
            start = begin + 1
            continue
        end = text.find(f"</{tag}>", begin)
        return None if end == -1 else text[begin : end + len(tag) + 3]
    return None


def system_sections(system: str) -> dict[str, str | None]:
    """Letta's split of a system message. A block may be labelled like a section, so
    sections other than the memory blocks only count outside them."""
    blocks = _tagged(system, "memory_blocks")
    begin = system.find("<memory_blocks>")
    span = (begin, begin + len(blocks)) if blocks is not None else None
    sections = {tag: _tagged(system, tag, outside=span) for tag in _SECTION_TAGS[1:]}
    preamble = _tagged(system, "base_instructions")
    if preamble is None:
        cut = min([p for t in _SECTION_TAGS if (p := system.find(f"<{t}>")) != -1] or [len(system)])
        preamble = system[:cut].strip() or None
    return {"system_prompt": preamble, "memory_blocks": blocks, **sections}


def _message_chars(messages: Sequence[Message]) -> int:
    chars = 0
    for message in messages:
        chars += len(message.text or "") + len(message.reasoning or "")
        chars += sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    return chars


class ContextService:
    def __init__(self, env: Env, agents: AgentService) -> None:
        self._env = env
        self._agents = agents

    async def overview(self, agent_id: str) -> dict[str, Any]:
        agent = await self._agents.retrieve(agent_id, ("agent.blocks", "agent.tools"))
        in_context = await self._env.store.get_messages(agent.message_ids)
        has_system = bool(in_context) and in_context[0].role == "system"
        system = (in_context[0].text or "") if has_system else ""
        history = in_context[1:] if has_system else in_context
        sections = system_sections(system)
        functions = [
            {"type": "function", "function": tool.json_schema}
            for tool in agent.tools
            if tool.json_schema is not None
        ]
        tokens = {
            "num_tokens_system": _tokens(sections["system_prompt"] or agent.system),
            "num_tokens_core_memory": _tokens(sections["memory_blocks"]),
            "num_tokens_memory_filesystem": _tokens(sections["memory_filesystem"]),
            "num_tokens_tool_usage_rules": _tokens(sections["tool_usage_rules"]),
            "num_tokens_directories": _tokens(sections["directories"]),
            "num_tokens_external_memory_summary": _tokens(sections["memory_metadata"]),
            "num_tokens_summary_memory": 0,
            "num_tokens_messages": _message_chars(history) // CHARS_PER_TOKEN,
            "num_tokens_functions_definitions": _tokens(json.dumps(functions)),
        }
        return {
            "context_window_size_max": agent.llm_config.context_window,
            "context_window_size_current": sum(tokens.values()),
            "num_messages": len(in_context),
            "num_archival_memory": await self._env.store.count_passages(archive_id_of(agent.id)),
            "num_recall_memory": await self._env.store.count_messages(agent.id),
            **tokens,
            "system_prompt": sections["system_prompt"] or agent.system,
            "core_memory": sections["memory_blocks"] or "",
            "memory_filesystem": sections["memory_filesystem"],
            "tool_usage_rules": sections["tool_usage_rules"],
            "directories": sections["directories"],
            "external_memory_summary": sections["memory_metadata"] or "",
            "summary_memory": None,
            "functions_definitions": functions,
            "messages": letta_messages(in_context),
        }

"""Compaction: when a thread's in-context messages grow too long, the older ones are
summarised by the agent's model into one summary message, which takes their place in
context (they stay in recall memory, searchable). Runs before a model call would overflow
the context window, and on request (`/compact`, `/summarize`)."""

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kelpie.agent._context import message_chars
from kelpie.agent._prompt import format_letta_time
from kelpie.llm import ChatMessage, LlmClient, LlmRequest
from kelpie.schemas import LlmConfig, Message

# Compaction starts when the estimated prompt passes this share of the context window.
COMPACTION_TRIGGER_FRACTION: Final = 0.9
# A sliding-window compaction keeps the newest messages up to this share of the characters.
COMPACTION_KEEP_FRACTION: Final = 0.3
SUMMARY_CHARS_MAX: Final = 50_000
# The transcript the summariser reads is cut to this many characters per message.
TRANSCRIPT_MESSAGE_CHARS_MAX: Final = 4_000
CHARS_PER_TOKEN: Final = 4
MODES: Final = frozenset({"all", "sliding_window"})
SUMMARY_INSTRUCTIONS: Final = (
    "You are compacting an AI agent's conversation history. The messages below are"
    " leaving the agent's context window. Write a concise but complete summary of them"
    " for the agent to read in their place: what the user asked for and said, what the"
    " agent did (tools it called and what they returned), decisions made, facts learned,"
    " and anything still open. Write in the third person, in plain prose. Reply with the"
    " summary only."
)


class NothingToCompact(Exception):
    """Too few messages to summarise any away."""


@dataclasses.dataclass(frozen=True)
class CompactionPlan:
    evicted: list[Message]
    kept: list[Message]


def estimate_tokens(messages: Sequence[Message], tools_chars: int = 0) -> int:
    return (sum(message_chars(m) for m in messages) + tools_chars) // CHARS_PER_TOKEN


def chars_over_window(chars: int, context_window: int) -> bool:
    """Whether a prompt of `chars` characters (messages and tools) calls for compaction."""
    return chars // CHARS_PER_TOKEN > context_window * COMPACTION_TRIGGER_FRACTION


def should_compact(messages: Sequence[Message], tools_chars: int, context_window: int) -> bool:
    return estimate_tokens(messages, tools_chars) > context_window * COMPACTION_TRIGGER_FRACTION


def plan_compaction(history: Sequence[Message], mode: str) -> CompactionPlan:
    """Which messages (the system message excluded) go and which stay. Kept messages
    start at a user message, so no tool call is ever cut from its results."""
    if mode == "all":
        if not history:
            raise NothingToCompact()
        return CompactionPlan(list(history), [])
    total = sum(len(m.text or "") for m in history)
    budget = total * COMPACTION_KEEP_FRACTION
    cut = len(history)
    kept_chars = 0
    for index in range(len(history) - 1, 0, -1):
        kept_chars += len(history[index].text or "")
        if kept_chars > budget:
            break
        if history[index].role == "user" and not history[index].hidden:
            cut = index
    if cut == len(history):
        # No user message to cut at inside the budget: keep the newest turn whole.
        starts = [i for i, m in enumerate(history) if m.role == "user" and not m.hidden]
        cut = starts[-1] if starts else len(history)
    if cut <= 0:
        raise NothingToCompact()
    return CompactionPlan(list(history[:cut]), list(history[cut:]))


def _transcript(messages: Sequence[Message]) -> str:
    lines = []
    for message in messages:
        text = message.text or ""
        if message.tool_calls:
            calls = ", ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
            text = f"{text}\n[called {calls}]".strip()
        lines.append(f"{message.role}: {text[:TRANSCRIPT_MESSAGE_CHARS_MAX]}")
    return "\n".join(lines)


async def summarize(
    llm: LlmClient, config: LlmConfig, evicted: Sequence[Message], prompt: str | None
) -> str:
    request = LlmRequest(
        config=config,
        messages=(
            ChatMessage(role="system", content=prompt or SUMMARY_INSTRUCTIONS),
            ChatMessage(role="user", content=_transcript(evicted)),
        ),
    )
    response = await llm.complete(request, None)
    return (response.content or "").strip()[:SUMMARY_CHARS_MAX]


def summary_fields(
    summary: str, evicted: int, total: int, now: dt.datetime, timezone: str
) -> dict[str, Any]:
    """The summary message's fields: the summary, and Letta's system alert around it,
    which is what the model reads."""
    note = (
        f"Note: prior messages ({evicted} of {total} total messages) have been hidden from"
        " view due to conversation memory constraints.\n"
        f"The following is a summary of the previous {evicted} messages:\n {summary}"
    )
    alert = {"type": "system_alert", "message": note, "time": format_letta_time(now, timezone)}
    return {"role": "summary", "text": json.dumps(alert, ensure_ascii=False), "summary": summary}


def compaction_mode(settings: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(mode, prompt) from an agent's or a request's compaction settings."""
    mode = str((settings or {}).get("mode") or "sliding_window")
    if mode not in MODES:
        mode = "all" if mode.endswith("all") else "sliding_window"
    prompt = (settings or {}).get("prompt")
    return mode, prompt if isinstance(prompt, str) and prompt else None

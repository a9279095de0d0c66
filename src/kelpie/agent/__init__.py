"""The agent layer: it owns the agent loop, the system prompt compiler and the agent types.

The loop (`AgentLoop.run_turn`) runs one turn step by step and commits each step in one
transaction. The compiler: `compile_system_prompt` builds an agent's system message
(`message_ids[0]`) exactly as Letta does, from the uncompiled prompt, the memory blocks,
the tool rules and the memory metadata; the small helpers beside it render the pieces
the loop also needs (Letta's time format, one tool rule's text, the request-scoped
skills section).

It may import kelpie.tools, kelpie.llm, kelpie.memory, kelpie.storage, kelpie.env,
kelpie.schemas and kelpie.errors, nothing above.
"""

from kelpie.agent._compaction import (
    NothingToCompact,
    compaction_mode,
    plan_compaction,
    summarize,
    summary_fields,
)
from kelpie.agent._context import ThreadContext
from kelpie.agent._events import closing_items, error_item, stop_item
from kelpie.agent._loop import HEARTBEAT_AGENT_TYPES, AgentLoop, usage_statistics
from kelpie.agent._prompt import (
    CORE_MEMORY_PLACEHOLDER,
    LINE_NUMBER_WARNING,
    TOOL_RULES_DESCRIPTION,
    ClientSkill,
    append_available_skills,
    available_skills_section,
    compile_system_prompt,
    format_letta_time,
    tool_rule_prompt,
    uses_line_numbers,
)
from kelpie.agent._render import expand, expand_all, item_otid
from kelpie.agent._turn import (
    ApprovalReply,
    Item,
    NoEvents,
    Turn,
    TurnEvents,
    TurnResult,
    WriteWithEvents,
)

__all__ = [
    "CORE_MEMORY_PLACEHOLDER",
    "HEARTBEAT_AGENT_TYPES",
    "LINE_NUMBER_WARNING",
    "TOOL_RULES_DESCRIPTION",
    "AgentLoop",
    "ApprovalReply",
    "ClientSkill",
    "Item",
    "NoEvents",
    "NothingToCompact",
    "ThreadContext",
    "Turn",
    "TurnEvents",
    "TurnResult",
    "WriteWithEvents",
    "append_available_skills",
    "available_skills_section",
    "closing_items",
    "compaction_mode",
    "compile_system_prompt",
    "error_item",
    "expand",
    "expand_all",
    "format_letta_time",
    "item_otid",
    "plan_compaction",
    "stop_item",
    "summarize",
    "summary_fields",
    "tool_rule_prompt",
    "usage_statistics",
    "uses_line_numbers",
]

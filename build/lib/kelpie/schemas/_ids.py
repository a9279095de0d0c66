"""Letta ids: `<prefix>-<uuid4>`, validated wherever a client hands one in."""

import re
from typing import Final, NewType

AgentId = NewType("AgentId", str)
BlockId = NewType("BlockId", str)
ToolId = NewType("ToolId", str)

AGENT_PREFIX: Final = "agent"
BLOCK_PREFIX: Final = "block"
TOOL_PREFIX: Final = "tool"
MESSAGE_PREFIX: Final = "message"
RUN_PREFIX: Final = "run"
STEP_PREFIX: Final = "step"
CONVERSATION_PREFIX: Final = "conv"
PASSAGE_PREFIX: Final = "passage"
ARCHIVE_PREFIX: Final = "archive"
MCP_SERVER_PREFIX: Final = "mcp_server"

_UUID4_PATTERN: Final = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_PATTERNS: dict[str, re.Pattern[str]] = {}


def id_pattern(prefix: str) -> str:
    """The pattern Letta reports in its 422s, e.g. `agent-{uuid4}`."""
    return f"{prefix}-{{uuid4}}"


def is_valid_id(prefix: str, value: str) -> bool:
    pattern = _PATTERNS.get(prefix)
    if pattern is None:
        pattern = _PATTERNS[prefix] = re.compile(f"{re.escape(prefix)}-{_UUID4_PATTERN}")
    return pattern.fullmatch(value) is not None

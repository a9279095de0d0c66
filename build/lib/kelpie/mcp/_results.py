"""What the SDK's answers become: a listed tool is an `McpTool`, a tool call's content is
text (`McpCallResult`). Pure functions, no I/O."""

from collections.abc import Iterable
from typing import Any, Final

from mcp import types

from kelpie.mcp._types import MCP_RESULT_CHARS_MAX, McpCallResult, McpTool

RESULT_CUT_NOTE: Final = "\n[cut: the result was {total} characters, more than the {limit} kept]"


def tools_of(listed: Iterable[types.Tool]) -> list[McpTool]:
    return [
        McpTool(name=tool.name, description=tool.description, input_schema=tool.input_schema)
        for tool in listed
    ]


def call_result_of(result: types.CallToolResult) -> McpCallResult:
    """Text parts joined by newlines, other parts described; cut at MCP_RESULT_CHARS_MAX."""
    text = "\n".join(_part_text(part) for part in result.content)
    if len(text) > MCP_RESULT_CHARS_MAX:
        note = RESULT_CUT_NOTE.format(total=len(text), limit=MCP_RESULT_CHARS_MAX)
        text = text[: MCP_RESULT_CHARS_MAX - len(note)] + note
    assert len(text) <= MCP_RESULT_CHARS_MAX, len(text)
    return McpCallResult(
        text=text, is_error=result.is_error, structured=_structured(result.structured_content)
    )


def error_result(text: str) -> McpCallResult:
    """A call the server answered with a JSON-RPC error (unknown tool, bad arguments):
    the server's refusal, which the agent can act on, so it is the call's error result."""
    return McpCallResult(text=text[:MCP_RESULT_CHARS_MAX], is_error=True)


def _structured(value: Any) -> dict[str, Any] | None:
    # The 2025-11-25 protocol allows only an object; a later server may send any JSON value,
    # which is kept under "result" so `structured` stays a mapping.
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    return {"result": value}


def _part_text(part: types.ContentBlock) -> str:
    if isinstance(part, types.TextContent):
        return part.text
    if isinstance(part, types.ImageContent):
        return f"[image: {part.mime_type}, {_decoded_bytes(part.data)} bytes]"
    if isinstance(part, types.AudioContent):
        return f"[audio: {part.mime_type}, {_decoded_bytes(part.data)} bytes]"
    if isinstance(part, types.ResourceLink):
        return f"[resource link: {part.uri}" + (f", {part.mime_type}]" if part.mime_type else "]")
    assert isinstance(part, types.EmbeddedResource), type(part)
    resource = part.resource
    if isinstance(resource, types.TextResourceContents):
        return resource.text
    mime_type = resource.mime_type or "application/octet-stream"
    return f"[resource: {resource.uri}, {mime_type}, {_decoded_bytes(resource.blob)} bytes]"


def _decoded_bytes(data: str) -> int:
    """The size of base64 `data` once decoded, counted without decoding it."""
    return len(data.strip().rstrip("=")) * 3 // 4

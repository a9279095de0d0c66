"""Builders for built-in tool records: a name, a Letta tool type and an OpenAI function
schema. Shared by Letta's base tools and Kelpie's own."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kelpie.schemas import ToolType

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class BuiltinTool:
    name: str
    tool_type: ToolType
    description: str
    json_schema: JsonSchema


def text_param(description: str) -> JsonSchema:
    return {"type": "string", "description": description}


def integer_param(description: str) -> JsonSchema:
    return {"type": "integer", "description": description}


def boolean_param(description: str) -> JsonSchema:
    return {"type": "boolean", "description": description}


def strings_param(description: str) -> JsonSchema:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def choice_param(values: Sequence[str], description: str) -> JsonSchema:
    return {"type": "string", "enum": list(values), "description": description}


def builtin_tool(
    name: str,
    tool_type: ToolType,
    description: str,
    properties: dict[str, JsonSchema],
    required: Sequence[str] = (),
) -> BuiltinTool:
    parameters = {"type": "object", "properties": properties, "required": list(required)}
    schema = {"name": name, "description": description, "parameters": parameters}
    return BuiltinTool(name, tool_type, description, schema)

"""Derive a tool's OpenAI function schema from its Python source, the way Letta's
`POST /v1/tools` does, without ever executing or importing that source.

Rules (each one a client can rely on):

- The tool is the LAST top-level `def` or `async def` in the module: Letta's rule, so a
  file may define helpers first and the tool last. Nested and class-level functions are
  never the tool.
- The docstring is Google style. The tool description is the docstring's short
  description, followed by a blank line and the long description when there is one
  (Letta does the same; sections such as `Args:`, `Returns:` and `Examples:` are left out).
- Every parameter needs a description in the docstring's `Args:` section.
- `self` and `agent_state` are skipped: Letta injects them at call time.
- Annotations are read as syntax, never evaluated. `str`, `int`, `float` and `bool` map to
  their JSON types; `list[X]`, `List[X]` and `Sequence[X]` to arrays of X (a bare `list` to
  an array of strings, as in Letta); `dict`/`Dict` (with or without arguments) to an
  object; `Literal[...]` to an enum typed by its values; `Any` and a missing annotation to
  a schema with no `type` key, so the model may send any JSON value.
- A parameter is required iff it has no default and its annotation is not `Optional[X]`,
  `Union[X, None]` or `X | None`; the optional form maps to the schema of X.
- `*args`, `**kwargs` and positional-only parameters are rejected: tools are called with
  one keyword argument per JSON property.
"""

import ast
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from docstring_parser import Docstring, DocstringStyle, ParseError, parse

from kelpie.errors import InvalidInput

INJECTED_PARAMS: Final = frozenset({"self", "agent_state"})
# Arguments the loop adds to tool schemas; never passed to the tool itself.
LOOP_ARGUMENTS: Final = frozenset({"request_heartbeat", "thinking"})
SIGNATURES_CACHED_MAX: Final = 256

_SCALARS: Final[dict[str, str]] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
}
_ARRAYS: Final = frozenset({"list", "List", "Sequence"})
_OBJECTS: Final = frozenset({"dict", "Dict"})
_ANY: Final = "Any"
_ANNOTATION_CHARS_SHOWN: Final = 200
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_SUPPORTED: Final = (
    "str, int, float, bool, list[X], Sequence[X], dict, Literal[...], Optional[X], X | None, Any"
)

JsonSchema = dict[str, Any]
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class FunctionSignature:
    name: str
    takes_agent_state: bool
    parameters: frozenset[str]
    # It has **kwargs: any argument name is accepted.
    any_keywords: bool


@dataclass(frozen=True)
class DerivedTool:
    name: str
    description: str
    json_schema: JsonSchema


class _UnsupportedAnnotation(Exception):
    """Raised deep inside annotation mapping; turned into a message naming the parameter."""


@dataclass(frozen=True)
class _Param:
    name: str
    annotation: ast.expr | None
    annotation_text: str  # as the client spelled it, for error messages
    has_default: bool


def derive_tool_schema(source_code: str) -> DerivedTool:
    """Build the tool's name, description and OpenAI function schema from its source."""
    func = _last_function(_parse_module(source_code))
    docstring = _parse_docstring(func)
    description = _tool_description(docstring)
    json_schema: JsonSchema = {
        "name": func.name,
        "description": description,
        "parameters": _parameters_schema(func, source_code, _param_descriptions(docstring)),
    }
    return DerivedTool(name=func.name, description=description, json_schema=json_schema)


@functools.lru_cache(maxsize=SIGNATURES_CACHED_MAX)
def function_signature(source_code: str, name: str) -> FunctionSignature | None:
    """The top-level function `name` defined by the source (the last one of that name), or
    None if the source defines none or does not parse."""
    try:
        module = ast.parse(source_code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    found = [
        node
        for node in module.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
    ]
    if not found:
        return None
    args = found[-1].args
    names = frozenset(a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs])
    return FunctionSignature(
        name, "agent_state" in names, names - INJECTED_PARAMS, args.kwarg is not None
    )


def check_schema_matches(source_code: str, json_schema: JsonSchema) -> None:
    """A client-supplied schema must describe a function the source defines: its name, and
    only parameters that function takes. Raises InvalidInput saying what does not match."""
    _parse_module(source_code)
    name = json_schema["name"]
    signature = function_signature(source_code, name)
    if signature is None:
        raise InvalidInput(
            f"json_schema names the function '{name}', which source_code does not define"
        )
    parameters = json_schema.get("parameters") or {}
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        raise InvalidInput("json_schema.parameters.properties must be an object")
    unknown = sorted(set(properties) - signature.parameters - LOOP_ARGUMENTS)
    if unknown and not signature.any_keywords:
        raise InvalidInput(
            f"json_schema has parameters {unknown} that function '{name}' does not take"
        )


def _parameters_schema(
    func: FunctionNode, source_code: str, descriptions: dict[str, str]
) -> JsonSchema:
    properties: dict[str, JsonSchema] = {}
    required: list[str] = []
    for param in _params(func, source_code):
        if param.name in INJECTED_PARAMS:
            continue
        schema, nullable = _param_type_schema(func.name, param)
        description = _description_of(func, param, descriptions)
        properties[param.name] = {**schema, "description": description}
        if not param.has_default and not nullable:
            required.append(param.name)
    return {"type": "object", "properties": properties, "required": required}


# --- the function and its docstring -----------------------------------------------------


def _parse_module(source_code: str) -> ast.Module:
    try:
        return ast.parse(source_code)
    except SyntaxError as exc:
        where = f" at line {exc.lineno}" if exc.lineno is not None else ""
        raise InvalidInput(f"source_code has a syntax error{where}: {exc.msg}") from exc
    except ValueError as exc:  # null bytes, on Pythons that do not report them as syntax
        raise InvalidInput(f"source_code cannot be parsed: {exc}") from exc
    except (RecursionError, MemoryError) as exc:
        raise InvalidInput("source_code is nested too deeply to parse") from exc


def _last_function(module: ast.Module) -> FunctionNode:
    functions = [n for n in module.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not functions:
        raise InvalidInput(
            "source_code defines no function: define the tool as a top-level def "
            "with a Google-style docstring"
        )
    return functions[-1]


def _parse_docstring(func: FunctionNode) -> Docstring:
    text = ast.get_docstring(func, clean=True)
    if not text:
        raise InvalidInput(
            f"Function '{func.name}' has no docstring: add a Google-style docstring "
            "describing it and its Args"
        )
    try:
        return parse(text, style=DocstringStyle.GOOGLE)
    except ParseError as exc:
        raise InvalidInput(
            f"Function '{func.name}' has a docstring that is not valid Google style: {exc}"
        ) from exc


def _tool_description(docstring: Docstring) -> str:
    parts = (docstring.short_description, docstring.long_description)
    return "\n\n".join(str(part).strip() for part in parts if part and str(part).strip())


def _param_descriptions(docstring: Docstring) -> dict[str, str]:
    return {
        str(p.arg_name): str(p.description).strip()
        for p in docstring.params
        if p.description is not None
    }


def _description_of(func: FunctionNode, param: _Param, descriptions: dict[str, str]) -> str:
    description = descriptions.get(param.name, "")
    if not description:
        raise InvalidInput(
            f"Parameter '{param.name}' of function '{func.name}' has no description "
            "in the docstring's Args section"
        )
    return description


# --- the parameter list -----------------------------------------------------------------


def _params(func: FunctionNode, source_code: str) -> Iterator[_Param]:
    args = func.args
    if args.vararg is not None:
        raise InvalidInput(_variadic_message(func.name, f"*{args.vararg.arg}"))
    if args.kwarg is not None:
        raise InvalidInput(_variadic_message(func.name, f"**{args.kwarg.arg}"))
    for arg in args.posonlyargs:
        if arg.arg not in INJECTED_PARAMS:
            raise InvalidInput(
                f"Parameter '{arg.arg}' of function '{func.name}' is positional-only: "
                "tools are called with keyword arguments, so remove the '/'"
            )
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    for index, arg in enumerate(positional):
        yield _param(arg, source_code, has_default=index >= first_default)
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        yield _param(arg, source_code, has_default=default is not None)


def _param(arg: ast.arg, source_code: str, *, has_default: bool) -> _Param:
    text = ""
    if arg.annotation is not None:
        text = ast.get_source_segment(source_code, arg.annotation) or ""
    if len(text) > _ANNOTATION_CHARS_SHOWN:
        text = text[:_ANNOTATION_CHARS_SHOWN] + "..."
    return _Param(arg.arg, arg.annotation, text, has_default)


def _variadic_message(func_name: str, spelled: str) -> str:
    return (
        f"Function '{func_name}' takes {spelled}: tools receive one named argument per "
        "JSON property, so declare each parameter explicitly"
    )


# --- annotations to JSON schema ---------------------------------------------------------


def _param_type_schema(func_name: str, param: _Param) -> tuple[JsonSchema, bool]:
    """Map the annotation to (schema, nullable); nullable means Optional, so not required."""
    if param.annotation is None:
        return {}, False
    try:
        return _nullable_schema(param.annotation)
    except (_UnsupportedAnnotation, RecursionError) as exc:
        raise InvalidInput(
            f"Parameter '{param.name}' of function '{func_name}' has an unsupported type "
            f"annotation '{param.annotation_text}': supported are {_SUPPORTED}"
        ) from exc


def _nullable_schema(node: ast.expr) -> tuple[JsonSchema, bool]:
    node = _unquote(node)
    members = _union_members(node)
    if members is None:
        return _schema(node), False
    others = [m for m in members if not _is_none(m)]
    if len(others) != 1 or len(others) == len(members):
        raise _UnsupportedAnnotation  # only X-or-None unions have a single JSON type
    return _schema(others[0]), True


def _union_members(node: ast.expr) -> list[ast.expr] | None:
    """The members of `A | B`, `Union[A, B]` or `Optional[A]` (as A and None), else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flatten_bitor(node)
    if isinstance(node, ast.Subscript):
        head = _head_name(node.value)
        if head == "Optional":
            return [node.slice, ast.Constant(value=None)]
        if head == "Union":
            return _subscript_args(node)
    return None


def _flatten_bitor(node: ast.expr) -> list[ast.expr]:
    """Members of a `|` chain, left to right; iterative because the chain may be long."""
    members: list[ast.expr] = []
    pending = [node]
    while pending:
        current = _unquote(pending.pop())
        if isinstance(current, ast.BinOp) and isinstance(current.op, ast.BitOr):
            pending += [current.right, current.left]
        else:
            members.append(current)
    return members


def _schema(node: ast.expr) -> JsonSchema:
    """Schema of a non-union annotation; an inner Optional (e.g. in list items) is unwrapped."""
    node = _unquote(node)
    if _union_members(node) is not None:
        return _nullable_schema(node)[0]
    if isinstance(node, ast.Subscript):
        return _subscript_schema(node)
    name = _head_name(node)
    if name in _SCALARS:
        return {"type": _SCALARS[name]}
    if name in _ARRAYS:
        return {"type": "array", "items": {"type": "string"}}
    if name in _OBJECTS:
        return {"type": "object"}
    if name == _ANY:
        return {}
    raise _UnsupportedAnnotation


def _subscript_schema(node: ast.Subscript) -> JsonSchema:
    head = _head_name(node.value)
    if head in _ARRAYS:
        args = _subscript_args(node)
        if len(args) != 1:
            raise _UnsupportedAnnotation
        return {"type": "array", "items": _schema(args[0])}
    if head in _OBJECTS:
        return {"type": "object"}
    if head == "Literal":
        return _literal_schema(_subscript_args(node))
    raise _UnsupportedAnnotation


_LITERAL_TYPES: Final[dict[type, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
}


def _literal_schema(args: list[ast.expr]) -> JsonSchema:
    values = [_literal_value(arg) for arg in args]
    kinds = {_LITERAL_TYPES.get(type(value)) for value in values}
    if len(kinds) != 1 or None in kinds:
        raise _UnsupportedAnnotation  # mixed or non-scalar literals have no single JSON type
    return {"type": kinds.pop(), "enum": values}


def _literal_value(node: ast.expr) -> Any:
    try:
        value = ast.literal_eval(node)
    except ValueError as exc:
        raise _UnsupportedAnnotation from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise _UnsupportedAnnotation  # JSON has no inf or nan
    if type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
        raise _UnsupportedAnnotation  # the JSON encoder stops at 64 bits
    return value


# --- small AST helpers ------------------------------------------------------------------


def _unquote(node: ast.expr) -> ast.expr:
    """Read a string annotation (`"list[str]"`) as the expression it spells."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            return _unquote(ast.parse(node.value.strip(), mode="eval").body)
        except (SyntaxError, ValueError, MemoryError) as exc:
            raise _UnsupportedAnnotation from exc
    return node


def _head_name(node: ast.expr) -> str | None:
    """`List` for both `List` and `typing.List`; None for anything that is not a name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _subscript_args(node: ast.Subscript) -> list[ast.expr]:
    inner = node.slice
    return list(inner.elts) if isinstance(inner, ast.Tuple) else [inner]


def _is_none(node: ast.expr) -> bool:
    node = _unquote(node)
    return isinstance(node, ast.Constant) and node.value is None

"""Running a snippet of the agent's code, shared by the programs inside the sandboxes (the
one-shot worker and the gVisor session; stdlib only): a snippet runs as a notebook cell
does, and the agent's tools are functions whose calls go to the host and back."""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    # Sends a tool call's message to the host and returns the host's answer.
    Ask = Callable[[dict[str, Any]], dict[str, Any]]


class ToolError(Exception):
    """A tool called from code failed; the message is what the tool returned."""


class CodeStopped(BaseException):
    """The host stopped the code at a tool call (the call waits for approval; the code
    runs again once it is answered). Not an Exception: `except Exception` lets it through."""


def run(source: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Runs `source` in `namespace`: what it prints is its output, and the value of its
    last line, when that is an expression, is its result."""
    import ast  # ~2 ms: only for code jobs, not for every tool call of a worker

    try:
        tree = ast.parse(source, "<code>")
        last = tree.body[-1] if tree.body else None
        if isinstance(last, ast.Expr):
            tree.body.pop()
        exec(compile(tree, "<code>", "exec"), namespace)
        value = None
        if isinstance(last, ast.Expr):
            value = eval(compile(ast.Expression(last.value), "<code>", "eval"), namespace)
    except BaseException as error:
        return failure(error)
    return {"status": "success", "func_return": as_json(value)}


def failure(error: BaseException, prefix: str = "") -> dict[str, Any]:
    """The reply for code that raised; its traceback also goes to stderr, as Python's own."""
    import traceback

    traceback.print_exc()
    return {
        "status": "error",
        "error": f"{prefix}{type(error).__name__}: {error}",
        "exception": type(error).__name__,
        "traceback": traceback.format_exc(),
    }


def tools_module(tools: list[dict[str, Any]], ask: Ask) -> Any:
    """The module `kelpie_tools` (also in sys.modules): a function per tool of the job."""
    module = type(sys)("kelpie_tools")
    module.__doc__ = "The agent's tools: each call runs on the host, as a direct call would."
    names = []
    for tool in tools:
        setattr(module, tool["name"], tool_function(tool["name"], tool["parameters"], ask))
        names.append(tool["name"])
    setattr(module, "ToolError", ToolError)  # noqa: B010 (a module built at run time)
    setattr(module, "__all__", names)  # noqa: B010
    sys.modules["kelpie_tools"] = module
    return module


def tool_function(name: str, parameters: list[str], ask: Ask) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(parameters):
            raise TypeError(f"{name}() takes {len(parameters)} positional arguments")
        arguments = dict(zip(parameters, args, strict=False))
        for key, value in kwargs.items():
            if key in arguments:
                raise TypeError(f"{name}() got multiple values for argument '{key}'")
            arguments[key] = value
        answer = ask({"call": name, "arguments": arguments})
        if answer.get("stop"):
            raise CodeStopped(answer["value"])
        if not answer["ok"]:
            raise ToolError(answer["value"])
        return answer["value"]

    call.__name__ = call.__qualname__ = name
    return call


def as_json(value: Any) -> Any:
    """The value itself when JSON can carry it, else its str() (as Letta returns it)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return str(value)
    return value

"""The program that runs inside the sandbox (stdlib only, started by bubblewrap with the
seccomp filter already loaded): it confines itself with Landlock, says it is ready, waits for
one job on its channel (the fd named by `--fd`), runs it and answers on the same channel.

Jobs travel as JSON over the channel, never argv or the environment, so secrets appear
nowhere else; the function's prints and its subprocesses' output go to fds 1 and 2, which
the host reads as the result's stdout and stderr. One job per worker: it then exits."""

from __future__ import annotations

import _socket  # the C module: `socket` costs a cold start ~2 ms of enum set-up
import io
import json
import os
import resource
import sys

# Every import here is start-up time of a cold call: typing names are for the checker
# only, and modules a job may not need (inspect, traceback) are imported when it does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# `python -I` leaves the script's directory off sys.path; the helpers live beside it (and
# leave again, so a tool's imports never find the sandbox's own modules).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:
    from kelpie.sandbox import _agent_state, _frames, _landlock
else:
    import _agent_state
    import _frames
    import _landlock

del sys.path[0]

SCRATCH_DIR = "/tmp"
READY = b"R"
_CHUNK_BYTES = 65536
# The job (source, arguments, agent state) and each tool's answer; the host checks its side.
_FRAME_BYTES_MAX = 64 * 1024 * 1024


def main(argv: list[str]) -> None:
    fd = int(argv[argv.index("--fd") + 1])
    writable = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--write"]
    workdir = argv[argv.index("--cwd") + 1] if "--cwd" in argv else SCRATCH_DIR
    os.set_inheritable(fd, False)
    channel = _socket.socket(fileno=fd)
    os.umask(0o022)
    _landlock.restrict(
        read=["/"],
        write_files=["/dev"],
        read_write=[SCRATCH_DIR, *writable],
        network="--network" in argv,
    )
    channel.sendall(READY)
    job = json.loads(_receive(channel))
    for name, (soft, hard) in job["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    assert isinstance(sys.stdout, io.TextIOWrapper)
    sys.stdout.reconfigure(line_buffering=True)
    os.environ.clear()
    os.environ.update(job["environment"])
    os.chdir(workdir)
    sys.path.extend(job["sys_path"])  # after the standard library: nothing shadows it
    result = _run(job) if job["function_name"] is not None else _run_code(job, channel)
    try:
        reply = json.dumps({"result": result}, default=str).encode()
    except (TypeError, ValueError, RecursionError) as error:
        failure = {"status": "error", "error": f"Tool result is not JSON: {error}"}
        reply = json.dumps({"result": failure}).encode()
    # Output first, and closed, so the host has all of it the moment the reply arrives.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the tool may have replaced or broken it
            pass
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    channel.sendall(_frames.encode(reply))
    channel.close()
    os._exit(0)  # nothing of the tool's (atexit hooks, finalizers) runs after its answer


def _receive(channel: _socket.socket) -> bytes:
    """One framed message from the host (the job, or the answer to a tool call)."""
    header = _receive_exactly(channel, _frames.HEADER_BYTES)
    return _receive_exactly(channel, _frames.body_length(header, _FRAME_BYTES_MAX))


def _receive_exactly(channel: _socket.socket, n_bytes: int) -> bytes:
    chunks = []
    while n_bytes:
        chunk = channel.recv(min(n_bytes, _CHUNK_BYTES))
        if not chunk:
            raise EOFError("the host closed the channel")
        chunks.append(chunk)
        n_bytes -= len(chunk)
    return b"".join(chunks)


def _run(job: dict[str, Any]) -> dict[str, Any]:
    name = job["function_name"]
    state = None if job["agent_state"] is None else _agent_state.AgentState(job["agent_state"])
    module = type(sys)("tool")
    try:
        exec(compile(job["source_code"], "<tool>", "exec"), module.__dict__)
        function = module.__dict__.get(name)
        if not callable(function):
            raise NameError(f"name '{name}' is not defined")
        arguments = dict(job["arguments"])
        if state is not None and _takes_agent_state(function):
            arguments["agent_state"] = state
        value = function(**arguments)
    except BaseException as error:
        failure = _failure(error, f"Error executing function {name}: ")
        return {**failure, "agent_state": None if state is None else state.to_json()}
    return {
        "status": "success",
        "func_return": _as_json(value),
        "agent_state": None if state is None else state.to_json(),
    }


def _run_code(job: dict[str, Any], channel: _socket.socket) -> dict[str, Any]:
    """Runs a snippet as a notebook cell would: its prints are its output, and the value of
    its last line, when that is an expression, is its result. The agent's tools are
    functions in its namespace and in the importable module `kelpie_tools`."""
    import ast

    tools = _tool_module(job["tools"], channel)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    namespace.update((name, getattr(tools, name)) for name in tools.__all__)
    sys.modules["kelpie_tools"] = tools
    try:
        tree = ast.parse(job["source_code"], "<code>")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<code>", "exec"), namespace)
        value = None
        if last is not None:
            expression = ast.Expression(last.value)
            value = eval(compile(expression, "<code>", "eval"), namespace)
    except BaseException as error:
        return _failure(error)
    return {"status": "success", "func_return": _as_json(value)}


def _failure(error: BaseException, prefix: str = "") -> dict[str, Any]:
    """The reply for code that raised; its traceback also goes to stderr, as Python's own."""
    import traceback

    traceback.print_exc()
    return {
        "status": "error",
        "error": f"{prefix}{type(error).__name__}: {error}",
        "exception": type(error).__name__,
        "traceback": traceback.format_exc(),
    }


class ToolError(Exception):
    """A tool called from code failed; the message is what the tool returned."""


def _tool_module(tools: list[dict[str, Any]], channel: _socket.socket) -> Any:
    module = type(sys)("kelpie_tools")
    module.__doc__ = "The agent's tools: each call runs on the host, as a direct call would."
    names = []
    for tool in tools:
        function = _tool_function(tool["name"], tool["parameters"], channel)
        setattr(module, tool["name"], function)
        names.append(tool["name"])
    setattr(module, "ToolError", ToolError)  # noqa: B010 (a module built at run time)
    setattr(module, "__all__", names)  # noqa: B010
    return module


def _tool_function(name: str, parameters: list[str], channel: _socket.socket) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(parameters):
            raise TypeError(f"{name}() takes {len(parameters)} positional arguments")
        arguments = dict(zip(parameters, args, strict=False))
        for key, value in kwargs.items():
            if key in arguments:
                raise TypeError(f"{name}() got multiple values for argument '{key}'")
            arguments[key] = value
        request = json.dumps({"call": name, "arguments": arguments}).encode()
        channel.sendall(_frames.encode(request))
        answer = json.loads(_receive(channel))
        if not answer["ok"]:
            raise ToolError(answer["value"])
        return answer["value"]

    call.__name__ = call.__qualname__ = name
    return call


def _takes_agent_state(function: Any) -> bool:
    import inspect

    return "agent_state" in inspect.signature(function).parameters


def _as_json(value: Any) -> Any:
    """The value itself when JSON can carry it, else its str() (as Letta returns it)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        return str(value)
    return value


if __name__ == "__main__":
    main(sys.argv)

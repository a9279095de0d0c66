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
    from kelpie.sandbox import _agent_state, _frames, _landlock, _snippet
else:
    import _agent_state
    import _frames
    import _landlock
    import _snippet

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
        failure = _snippet.failure(error, f"Error executing function {name}: ")
        return {**failure, "agent_state": None if state is None else state.to_json()}
    return {
        "status": "success",
        "func_return": _snippet.as_json(value),
        "agent_state": None if state is None else state.to_json(),
    }


def _run_code(job: dict[str, Any], channel: _socket.socket) -> dict[str, Any]:
    """A snippet (code mode): the agent's tools are functions of its namespace and of the
    module `kelpie_tools`, each call a message to the host and its answer."""

    def ask(message: dict[str, Any]) -> dict[str, Any]:
        channel.sendall(_frames.encode(json.dumps(message).encode()))
        answer: dict[str, Any] = json.loads(_receive(channel))
        return answer

    tools = _snippet.tools_module(job["tools"], ask)
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    namespace.update((name, getattr(tools, name)) for name in tools.__all__)
    return _snippet.run(job["source_code"], namespace)


def _takes_agent_state(function: Any) -> bool:
    import inspect

    return "agent_state" in inspect.signature(function).parameters


if __name__ == "__main__":
    main(sys.argv)

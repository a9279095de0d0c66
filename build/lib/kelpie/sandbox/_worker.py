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
    from kelpie.sandbox import _agent_state, _landlock
else:
    import _agent_state
    import _landlock

del sys.path[0]

SCRATCH_DIR = "/tmp"
READY = b"R"
_CHUNK_BYTES = 65536


def main(argv: list[str]) -> None:
    fd = int(argv[argv.index("--fd") + 1])
    writable = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--write"]
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
    result = _run(job)
    try:
        reply = json.dumps(result, default=str).encode()
    except (TypeError, ValueError, RecursionError) as error:
        reply = json.dumps(
            {"status": "error", "error": f"Tool result is not JSON: {error}"}
        ).encode()
    # Output first, and closed, so the host has all of it the moment the reply arrives.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # the tool may have replaced or broken it
            pass
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    channel.sendall(reply)
    channel.close()
    os._exit(0)  # nothing of the tool's (atexit hooks, finalizers) runs after its answer


def _receive(channel: _socket.socket) -> bytes:
    chunks = []
    while chunk := channel.recv(_CHUNK_BYTES):
        chunks.append(chunk)
    return b"".join(chunks)


def _run(job: dict[str, Any]) -> dict[str, Any]:
    os.environ.clear()
    os.environ.update(job["environment"])
    os.chdir(SCRATCH_DIR)
    sys.path.extend(job["sys_path"])  # after the standard library: nothing shadows it
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
        import traceback

        traceback.print_exc()
        return {
            "status": "error",
            "error": f"Error executing function {name}: {type(error).__name__}: {error}",
            "exception": type(error).__name__,
            "agent_state": None if state is None else state.to_json(),
        }
    return {
        "status": "success",
        "func_return": _as_json(value),
        "agent_state": None if state is None else state.to_json(),
    }


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

"""A pre-imported Python that forks `python -m kelpie serve` processes on request.

    python tests/durability/_zygote.py

The kill test restarts a server hundreds of times. A cold `python -m kelpie serve` spends
about 0.9 s importing kelpie, FastAPI and uvicorn before it listens, and its first model
call about 1 s more importing the openai SDK: some 2 s a restart, nearly all of it
imports. This process imports all of that once; each start then forks a child that runs
exactly what `python -m kelpie serve ARGS` runs (`runpy.run_module("kelpie",
run_name="__main__")` with that argv and environment), in its own session, output
appended to a log file. A restart then costs what start-up itself does: opening the
database, failing the runs a dead process left, binding the port.

Protocol, one JSON object a line each way (stdin in, stdout out):
    (on start-up, once imports are done)        -> {"ready": true}
    {"op": "spawn", "argv": [...], "env": {...}, "log": "/path"} -> {"pid": N}
    {"op": "wait", "pid": N, "timeout_s": S}    -> {"returncode": R or null}
R is what `subprocess` reports: the exit status, or -signal for a killed child; null when
the child has not exited within S seconds (S = 0 polls). On EOF the children still
running are SIGKILLed (with their process groups) and reaped, and the zygote exits.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import runpy
import signal
import sys
import time
import traceback
from typing import Any, Final

# What `kelpie serve` and a first turn import, eagerly or lazily (kelpie.llm imports the
# SDKs on first use). Nothing here may start a thread: a fork copies only the caller.
PRELOAD: Final = (
    "kelpie.cli",
    "kelpie.cli._env",
    "kelpie.cli._serve",
    "kelpie.api",
    "kelpie.service",
    "uvicorn",
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.lifespan.on",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.httptools_impl",
    "uvloop",
    "openai",
    "openai.types.chat",
    "openai.types.chat.completion_create_params",
)
WAIT_POLL_S: Final = 0.002
# A closed port: the warm-up call fails to connect, having imported what a call imports.
WARM_UP_BASE_URL: Final = "http://127.0.0.1:9/v1"


def _warm_up() -> None:
    """Makes one (failing) chat-completions call through the openai SDK, so the transport
    modules it imports on first use (~0.3 s) are in memory before any fork. It leaves no
    thread behind: asyncio.run shuts its default executor down."""
    import asyncio
    import threading

    import openai

    async def call() -> None:
        client = openai.AsyncOpenAI(
            api_key="warm-up", base_url=WARM_UP_BASE_URL, max_retries=0, timeout=2.0
        )
        try:
            await client.chat.completions.create(
                model="warm-up", messages=[{"role": "user", "content": "warm-up"}]
            )
        except openai.APIError:
            pass
        finally:
            await client.close()

    asyncio.run(call())
    assert threading.active_count() == 1, "the warm-up left a thread: forks would lose it"


def _exit_code(status: object) -> int:
    if status is None:
        return 0
    return status if isinstance(status, int) else 1


def _child(argv: list[str], env: dict[str, str], log: str) -> None:
    """In the forked child: become `python -m kelpie <argv>`; never returns."""
    code = 1
    try:
        os.setsid()
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["kelpie", *argv]
        try:
            runpy.run_module("kelpie", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _spawn(request: dict[str, Any]) -> dict[str, Any]:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(list(request["argv"]), dict(request["env"]), str(request["log"]))
    return {"pid": pid}


def _wait(pid: int, timeout_s: float, children: set[int]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            children.discard(pid)
            return {"returncode": os.waitstatus_to_exitcode(status)}
        if time.monotonic() >= deadline:
            return {"returncode": None}
        time.sleep(WAIT_POLL_S)


def _reap_all(children: set[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    children.clear()


def _answer(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main() -> int:
    for name in PRELOAD:
        importlib.import_module(name)
    _warm_up()
    children: set[int] = set()
    _answer({"ready": True})
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if request["op"] == "spawn":
                answer = _spawn(request)
                children.add(answer["pid"])
            elif request["op"] == "wait":
                answer = _wait(int(request["pid"]), float(request["timeout_s"]), children)
            else:
                answer = {"error": f"unknown op {request['op']!r}"}
            _answer(answer)
    finally:
        _reap_all(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())

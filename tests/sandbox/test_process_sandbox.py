"""ProcessSandbox through its public API, on this host's real bubblewrap.

One sandbox serves the module (on an event loop of its own, `asyncio.Runner`); the tests
that need their own (pool, close, a missing bwrap) make one. The pip test reaches PyPI."""

import asyncio
import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import psutil
import pytest

from kelpie.sandbox import MIB, ProcessSandbox, SandboxLimits, ToolJob, ToolJobResult

POOL_SIZE: Final = 4
SANDBOX_UID_FIRST: Final = 61000
POLL_INTERVAL_S: Final = 0.02
POLLS_MAX: Final = 500


class Caller:
    def __init__(self, runner: asyncio.Runner, sandbox: ProcessSandbox, root_dir: Path) -> None:
        self.runner = runner
        self.sandbox = sandbox
        self.root_dir = root_dir

    def run(self, function: Callable[..., Any], **job: Any) -> ToolJobResult:
        return self.runner.run(self.sandbox.run(tool_job(function, **job)))


def tool_job(function: Callable[..., Any], **job: Any) -> ToolJob:
    job.setdefault("arguments", {})
    return ToolJob(source_code=inspect.getsource(function), function_name=function.__name__, **job)


@pytest.fixture(scope="module")
def caller() -> Iterator[Caller]:
    root_dir = Path(tempfile.mkdtemp(prefix="kelpie-sandbox-test-"))
    try:
        with asyncio.Runner() as runner:
            sandbox = ProcessSandbox(root_dir=root_dir, pool_size=POOL_SIZE)
            runner.run(sandbox.start())
            runner.run(sandbox.ready())
            assert sandbox.unavailable_reason is None, sandbox.unavailable_reason
            try:
                yield Caller(runner, sandbox, root_dir)
            finally:
                runner.run(sandbox.close())
    finally:
        shutil.rmtree(root_dir, ignore_errors=True)


# --- Tool functions (their source is what the sandbox runs).


def add(a: int, b: int) -> int:
    return a + b


def chatty(text: str) -> str:
    import sys

    sys.stdout.write(f"out: {text}\n")
    sys.stderr.write(f"err: {text}\n")
    return "done"


def fails(message: str) -> None:
    raise ValueError(message)


def read_environment(name: str) -> str | None:
    import os

    return os.environ.get(name)


def edit_memory(agent_state: "Any", label: str, suffix: str) -> str:
    before = agent_state.memory.get_block(label).value
    agent_state.memory.update_block_value(label, before + suffix)
    return f"{agent_state.name}: {before}"


def not_json() -> object:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    return Thing()


def sleeps(seconds: float) -> None:
    import time

    time.sleep(seconds)


def exits(code: int) -> None:
    import os

    os._exit(code)


def kills_itself() -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def floods(n_bytes: int) -> None:
    import sys

    sys.stdout.write("x" * n_bytes)


def allocates(n_bytes: int) -> int:
    block = bytearray(n_bytes)
    for i in range(0, n_bytes, 4096):
        block[i] = 1
    return len(block)


def identity() -> dict[str, object]:
    import os

    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    return {"uid": os.getuid(), "euid": os.geteuid(), "cap_eff": status["CapEff"].strip()}


def imports_six() -> str:
    import importlib

    return str(importlib.import_module("six").__version__)


# --- Calls.


def test_function_returns_value_from_arguments(caller: Caller) -> None:
    result = caller.run(add, arguments={"a": 2, "b": 40})
    assert result.status == "success", result
    assert result.func_return == 42
    assert result.error is None


def test_print_goes_to_stdout_and_stderr(caller: Caller) -> None:
    result = caller.run(chatty, arguments={"text": "kelp"})
    assert result.status == "success", result
    assert result.stdout == "out: kelp\n"
    assert result.stderr == "err: kelp\n"


def test_exception_gives_letta_error_text(caller: Caller) -> None:
    result = caller.run(fails, arguments={"message": "bad input"})
    assert result.status == "error"
    assert result.error == "Error executing function fails: ValueError: bad input"
    assert "Traceback" in result.stderr
    assert "ValueError: bad input" in result.stderr


def test_environment_reaches_os_environ(caller: Caller) -> None:
    result = caller.run(
        read_environment, arguments={"name": "API_KEY"}, environment={"API_KEY": "s3cret"}
    )
    assert result.status == "success", result
    assert result.func_return == "s3cret"


def test_agent_state_round_trip(caller: Caller) -> None:
    state = {
        "id": "agent-1",
        "name": "otter",
        "memory": {"blocks": [{"id": "block-1", "label": "human", "value": "likes kelp"}]},
    }
    result = caller.run(edit_memory, arguments={"label": "human", "suffix": "!"}, agent_state=state)
    assert result.status == "success", result
    assert result.func_return == "otter: likes kelp"
    assert result.agent_state is not None
    assert result.agent_state["memory"]["blocks"][0]["value"] == "likes kelp!"
    assert result.agent_state["id"] == "agent-1"


def test_missing_block_names_the_label(caller: Caller) -> None:
    state = {"id": "agent-1", "name": "otter", "memory": {"blocks": []}}
    result = caller.run(
        edit_memory, arguments={"label": "persona", "suffix": ""}, agent_state=state
    )
    assert result.status == "error"
    assert result.error is not None
    assert "KeyError" in result.error
    assert "persona" in result.error


def test_non_json_return_becomes_str(caller: Caller) -> None:
    result = caller.run(not_json)
    assert result.status == "success", result
    assert result.func_return == "a thing"


# --- Limits and crashes.


def test_timeout(caller: Caller) -> None:
    result = caller.run(sleeps, arguments={"seconds": 30}, limits=SandboxLimits(timeout_s=1.0))
    assert result.status == "error"
    assert result.error == "Tool timed out after 1.0 s"


def test_exit_without_result(caller: Caller) -> None:
    result = caller.run(exits, arguments={"code": 3})
    assert result.status == "error"
    assert result.error == "Tool process exited with code 3 before returning a result"


def test_killed_by_signal(caller: Caller) -> None:
    result = caller.run(kills_itself)
    assert result.status == "error"
    assert result.error == "Tool process exited with signal 9"


def test_output_cap(caller: Caller) -> None:
    result = caller.run(floods, arguments={"n_bytes": 3 * MIB})
    assert result.status == "error"
    assert result.error == "Tool printed more than 1 MiB to stdout"
    assert len(result.stdout) <= MIB


def test_memory_limit(caller: Caller) -> None:
    limits = SandboxLimits(memory_bytes=64 * MIB)
    result = caller.run(allocates, arguments={"n_bytes": 512 * MIB}, limits=limits)
    assert result.status == "error"
    assert result.error == "Tool was killed: it exceeded its memory limit of 64 MiB"
    within = caller.run(allocates, arguments={"n_bytes": 16 * MIB}, limits=limits)
    assert within.status == "success", within


def test_code_is_not_root_and_has_no_capabilities(caller: Caller) -> None:
    result = caller.run(identity)
    assert result.status == "success", result
    assert result.func_return["uid"] != 0
    assert result.func_return["euid"] != 0
    assert result.func_return["cap_eff"] == "0000000000000000"


# --- pip requirements.


def test_invalid_requirement_is_refused(caller: Caller) -> None:
    result = caller.run(add, arguments={"a": 1, "b": 1}, pip_requirements=("--index-url=x",))
    assert result.status == "error"
    assert result.error is not None
    assert "Invalid pip requirement" in result.error


def test_pip_requirements_install_once_per_set(caller: Caller) -> None:
    one = ("six==1.16.0",)
    two = ("six==1.16.0", "six")

    async def both() -> list[ToolJobResult]:
        jobs = [tool_job(imports_six, pip_requirements=one) for _ in range(2)]
        jobs.append(tool_job(imports_six, pip_requirements=two))
        return await asyncio.gather(*(caller.sandbox.run(job) for job in jobs))

    results = caller.runner.run(both())
    for result in results:
        assert result.status == "success", result
        assert result.func_return == "1.16.0"
    pip_dir = caller.root_dir / "pip"
    installed = sorted(p.name for p in pip_dir.iterdir())
    assert len(installed) == 2, installed  # one per set, no partial installs left
    assert all(len(name) == 64 for name in installed)
    marker = max(p.stat().st_mtime_ns for p in pip_dir.iterdir())
    again = caller.run(imports_six, pip_requirements=one)
    assert again.status == "success", again
    assert max(p.stat().st_mtime_ns for p in pip_dir.iterdir()) == marker


# --- Concurrency and the pool.


def test_sixteen_concurrent_jobs(caller: Caller) -> None:
    async def many() -> list[ToolJobResult]:
        jobs = [tool_job(add, arguments={"a": i, "b": 1}) for i in range(16)]
        return await asyncio.gather(*(caller.sandbox.run(job) for job in jobs))

    results = caller.runner.run(many())
    assert [r.func_return for r in results] == [i + 1 for i in range(16)], results


def _sandbox_pids(sandbox: ProcessSandbox) -> set[int]:
    """This process's descendants that run as one of `sandbox`'s uids (each sandbox holds
    a block of its own, so the module's sandbox refilling its pool meanwhile is not seen)."""
    assert sandbox.description is not None
    assert sandbox.description.uid_range is not None
    first, last = sandbox.description.uid_range
    assert first >= SANDBOX_UID_FIRST
    found = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if first <= process.uids().real <= last:
                found.add(process.pid)
        except psutil.NoSuchProcess:
            continue
    return found


async def _poll(condition: Callable[[], bool]) -> bool:
    for _ in range(POLLS_MAX):
        if condition():
            return True
        await asyncio.sleep(POLL_INTERVAL_S)
    return condition()


def test_pool_refills_and_close_leaves_no_worker(tmp_path: Path) -> None:
    async def scenario() -> None:
        sandbox = ProcessSandbox(root_dir=tmp_path, pool_size=2)
        await sandbox.start()
        await sandbox.ready()
        assert await _poll(lambda: sandbox.warm_workers == 2)
        assert _sandbox_pids(sandbox), "warm workers run as sandbox uids"
        result = await sandbox.run(tool_job(add, arguments={"a": 1, "b": 2}))
        assert result.func_return == 3, result
        assert await _poll(lambda: sandbox.warm_workers == 2)
        running = asyncio.create_task(sandbox.run(tool_job(sleeps, arguments={"seconds": 30})))
        await asyncio.sleep(0.2)
        await sandbox.close()
        assert (await running).status == "error"
        assert not _sandbox_pids(sandbox)

    asyncio.run(scenario())


def test_start_returns_at_once_and_a_host_without_bwrap_refuses(tmp_path: Path) -> None:
    async def scenario() -> None:
        sandbox = ProcessSandbox(
            root_dir=tmp_path, bwrap_path=tmp_path / "missing" / "bwrap", code_sessions=False
        )
        await sandbox.start()
        result = await sandbox.run(tool_job(add, arguments={"a": 1, "b": 2}))
        await sandbox.close()
        reason = sandbox.unavailable_reason
        assert reason is not None
        assert "bwrap" in reason
        assert result.status == "error"
        assert result.error == f"Code cannot run confined on this host: {reason}"
        assert sandbox.description is None

    asyncio.run(scenario())
    assert os.listdir(tmp_path) == []


def test_workers_start_and_retire_concurrently_on_the_servers_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On uvloop (the server's loop), with starts in threads and retirements on the loop
    overlapping: every call is served and every start succeeds (a worker's fd closed under
    another's start shows as a pool start failure, which the pool logs and retries)."""
    import uvloop

    async def scenario() -> list[ToolJobResult]:
        sandbox = ProcessSandbox(root_dir=tmp_path, pool_size=4)
        await sandbox.start()
        await sandbox.ready()
        try:
            results: list[ToolJobResult] = []
            for _ in range(BATCHES):
                batch = [tool_job(add, arguments={"a": i, "b": 1}) for i in range(16)]
                results += await asyncio.gather(*(sandbox.run(job) for job in batch))
            return results
        finally:
            await sandbox.close()

    BATCHES = 8
    with caplog.at_level(logging.WARNING, logger="kelpie.sandbox"):
        results = uvloop.run(scenario())
    assert [r.func_return for r in results] == [i + 1 for _ in range(BATCHES) for i in range(16)]
    assert not caplog.records, [record.getMessage() for record in caplog.records]

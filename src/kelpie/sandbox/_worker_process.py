"""The host's handle on one sandboxed worker: launches it, waits until it is ready, hands it
one job and turns what happened (its reply, its output, a timeout, a limit, a crash) into a
ToolJobResult; then makes sure nothing of it is left (processes, cgroups, its uid)."""

import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from kelpie.sandbox import _bwrap, _child, _frames
from kelpie.sandbox._cgroups import WorkerCgroup
from kelpie.sandbox._host import HostPlan
from kelpie.sandbox._types import (
    MIB,
    SANDBOX_RESULT_BYTES_MAX,
    SANDBOX_TMP_BYTES_MAX,
    HostCallAnswer,
    HostCalls,
    SandboxLimits,
    ToolJobResult,
)
from kelpie.sandbox._uids import UidsExhausted
from kelpie.sandbox._workspace import SANDBOX_WORKSPACE_DIR

WORKER_START_TIMEOUT_S: Final = 30.0
# After the worker is gone, how long its output pipes may take to close.
OUTPUT_CLOSE_TIMEOUT_S: Final = 5.0
# How long the launch chain's head may take to exit once its sandbox is killed.
MONITOR_EXIT_TIMEOUT_S: Final = 2.0
CLEANUP_POLL_INTERVAL_S: Final = 0.001
CLEANUP_POLLS_MAX: Final = 5000
STDERR_QUOTE_CHARS_MAX: Final = 2000
_CHUNK_BYTES: Final = 65536
_SIGNAL_NAMES: Final[dict[int, str]] = {
    signal.SIGXCPU.value: "it used more than its CPU time limit",
    signal.SIGXFSZ.value: "it wrote a file larger than its limit",
}


class WorkerStartError(Exception):
    pass


def _size(n_bytes: int) -> str:
    return f"{n_bytes // MIB} MiB" if n_bytes % MIB == 0 else f"{n_bytes} bytes"


def memory_error(limits: SandboxLimits) -> str:
    return f"Tool was killed: it exceeded its memory limit of {_size(limits.memory_bytes)}"


class WorkerProcess:
    def __init__(
        self,
        plan: HostPlan,
        threads: concurrent.futures.Executor,
        *,
        network: bool = False,
        pip_target: Path | None = None,
        workspace: Callable[[int | None], Path] | None = None,
        tmp_bytes: int = SANDBOX_TMP_BYTES_MAX,
    ) -> None:
        self._plan = plan
        self._threads = threads
        self.network = network
        self._pip_target = pip_target
        # Readies the agent's workspace for the worker's uid (blocking: run in a thread).
        self._prepare_workspace = workspace
        self._workspace: Path | None = None
        self._tmp_bytes = tmp_bytes
        self._uid: int | None = None
        self._cgroup: WorkerCgroup | None = None
        self._process: _child.Child | None = None
        self._channel: socket.socket | None = None
        self._closed = False

    @property
    def uid(self) -> int | None:
        """The host uid the worker runs as (None: the server's own, which is not root)."""
        return self._uid

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Launches the worker and waits until it has confined itself and awaits a job."""
        try:
            await self._launch()
            assert self._channel is not None
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(WORKER_START_TIMEOUT_S):
                ready = await loop.sock_recv(self._channel, 1)
        except BaseException as error:
            await self.close()
            if isinstance(error, OSError | TimeoutError | UidsExhausted):
                raise WorkerStartError(f"the sandbox did not start: {error}") from error
            raise
        if ready != b"R":
            stderr = await self._stderr_after_kill()
            raise WorkerStartError(f"the sandbox did not start: {stderr or 'no output'}")

    async def _launch(self) -> None:
        plan = self._plan
        defaults = SandboxLimits()
        if plan.uids is not None:
            self._uid = plan.uids.take()
        if plan.cgroups is not None:
            self._cgroup = plan.cgroups.new_group(defaults.memory_bytes, defaults.processes)
        uid = os.getuid() if self._uid is None else self._uid
        if self._pip_target is not None and self._uid is not None:
            os.chown(self._pip_target, self._uid, self._uid)
        if self._prepare_workspace is not None:
            loop = asyncio.get_running_loop()
            self._workspace = await loop.run_in_executor(
                self._threads, self._prepare_workspace, self._uid
            )
        passwd, group = _bwrap.passwd_lines(uid)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.setblocking(False)
        self._channel = ours
        fds = [
            _data_pipe(plan.seccomp_bpf),
            _data_pipe(passwd.encode()),
            _data_pipe(group.encode()),
            theirs.fileno(),
        ]
        worker_args = ["--fd", str(theirs.fileno())]
        if self.network:
            worker_args.append("--network")
        if self._pip_target is not None:
            worker_args += ["--write", _bwrap.SANDBOX_PIP_TARGET_DIR]
        if self._workspace is not None:
            worker_args += ["--write", SANDBOX_WORKSPACE_DIR, "--cwd", SANDBOX_WORKSPACE_DIR]
        launch = _bwrap.Launch(
            uid=self._uid,
            holder_pid=plan.stage.holder_pid,
            cgroup_procs=[] if self._cgroup is None else self._cgroup.procs_files,
            binds=plan.binds(pip_target=self._pip_target, workspace=self._workspace),
            network=self.network,
            tmp_bytes=self._tmp_bytes,
            python=plan.python,
            worker_args=worker_args,
            seccomp_fd=fds[0],
            passwd_fd=fds[1],
            group_fd=fds[2],
        )
        spawning = asyncio.ensure_future(
            _child.spawn(
                _bwrap.command(plan.tools, launch),
                pass_fds=fds,
                env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                threads=self._threads,
            )
        )
        cancelled = False
        try:
            # The start runs to its end even when we are cancelled: its thread is handing
            # our fds to the child (closing them early could hand over others), and the
            # child must be known so close() ends it the careful way.
            while not spawning.done():
                try:
                    await asyncio.wait({spawning})
                except asyncio.CancelledError:
                    cancelled = True
            self._process = spawning.result()
            if cancelled:
                raise asyncio.CancelledError
        finally:
            for fd in fds[:3]:
                os.close(fd)
            theirs.close()

    async def run(
        self, payload: dict[str, Any], limits: SandboxLimits, calls: HostCalls | None = None
    ) -> ToolJobResult:
        """Hands the worker its job and waits for the end, a limit or the timeout; the tool
        calls its code makes on the way are answered by `calls`."""
        assert self._process is not None, "worker not started"
        assert self._channel is not None
        process, channel = self._process, self._channel
        payload = {**payload, "rlimits": self._rlimits(limits)}
        oom_before = 0
        if self._cgroup is not None:
            self._cgroup.set_limits(limits.memory_bytes, limits.processes)
            oom_before = self._cgroup.oom_kills()
        overflow: list[str] = []
        stdout = asyncio.create_task(self._read(process.stdout, "stdout", limits, overflow))
        stderr = asyncio.create_task(self._read(process.stderr, "stderr", limits, overflow))
        loop = asyncio.get_running_loop()
        reply: dict[str, Any] | None = None
        failure: str | None = None
        try:
            async with asyncio.timeout(limits.timeout_s):
                await loop.sock_sendall(channel, _frames.encode(json.dumps(payload).encode()))
                reply = await self._converse(channel, calls)
                if reply is None:
                    await process.wait()
        except TimeoutError:
            failure = f"Tool timed out after {limits.timeout_s:.1f} s"
        except _frames.FrameTooLarge:
            failure = f"Tool returned more than {SANDBOX_RESULT_BYTES_MAX // MIB} MiB"
        except OSError:
            pass  # the worker died before it read its job: its exit status says why
        # With its reply sent the worker has nothing left to do: end it and its strays now.
        self._kill()
        try:
            async with asyncio.timeout(OUTPUT_CLOSE_TIMEOUT_S):
                out, err = await asyncio.gather(stdout, stderr)
        except TimeoutError:
            stdout.cancel()
            stderr.cancel()
            out, err = b"", b""
        text_out = out.decode(errors="replace")
        text_err = err.decode(errors="replace")
        if failure is not None:
            pass
        elif overflow:
            failure = f"Tool printed more than {_size(limits.output_bytes)} to {overflow[0]}"
        elif reply is not None:
            return self._result(reply, limits, text_out, text_err)
        else:
            await process.wait()
            if self._cgroup is not None and self._cgroup.oom_kills() > oom_before:
                failure = memory_error(limits)
            else:
                failure = _exit_error(process.returncode)
        return ToolJobResult(status="error", stdout=text_out, stderr=text_err, error=failure)

    async def _converse(
        self, channel: socket.socket, calls: HostCalls | None
    ) -> dict[str, Any] | None:
        """Answers the worker's tool calls until its result arrives (None: it never came)."""
        loop = asyncio.get_running_loop()
        while True:
            body = await _receive_frame(channel)
            if body is None:
                return None
            try:
                message = json.loads(body)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                return {"status": "error", "error": "Tool sent an unreadable reply"}
            if "call" not in message:
                # The worker closes the channel right after its result and then exits:
                # wait for that, so it ends by itself rather than under our kill.
                await loop.sock_recv(channel, 1)
                result = message.get("result")
                return result if isinstance(result, dict) else {}
            await loop.sock_sendall(channel, await answer_frame(message, calls))

    def _result(
        self, answer: dict[str, Any], limits: SandboxLimits, out: str, err: str
    ) -> ToolJobResult:
        if answer.get("status") not in ("success", "error"):
            return ToolJobResult(
                status="error", stdout=out, stderr=err, error="Tool sent an unreadable reply"
            )
        error = answer.get("error")
        if answer.get("exception") == "MemoryError":
            error = memory_error(limits)
        return ToolJobResult(
            status=answer["status"],
            func_return=answer.get("func_return"),
            stdout=out,
            stderr=err,
            agent_state=answer.get("agent_state"),
            error=None if answer["status"] == "success" else str(error),
            traceback=answer.get("traceback"),
        )

    def _rlimits(self, limits: SandboxLimits) -> dict[str, tuple[int, int]]:
        cpu_s = math.ceil(limits.timeout_s) + 1
        rlimits = {
            "RLIMIT_NPROC": (limits.processes, limits.processes),
            "RLIMIT_NOFILE": (limits.open_files, limits.open_files),
            "RLIMIT_FSIZE": (limits.file_bytes, limits.file_bytes),
            "RLIMIT_CPU": (cpu_s, cpu_s + 1),
            "RLIMIT_CORE": (0, 0),
        }
        if self._cgroup is None:
            rlimits["RLIMIT_AS"] = (limits.memory_bytes, limits.memory_bytes)
        return rlimits

    async def _read(
        self,
        stream: _child.ChildOutput,
        name: str,
        limits: SandboxLimits,
        overflow: list[str],
    ) -> bytes:
        """Reads one output stream to its end; past the cap, kills the worker."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await stream.read(_CHUNK_BYTES):
            if size < limits.output_bytes:
                chunks.append(chunk[: limits.output_bytes - size])
            size += len(chunk)
            if size > limits.output_bytes and name not in overflow:
                overflow.append(name)
                self._kill()
        return b"".join(chunks)

    async def _stderr_after_kill(self) -> str:
        assert self._process is not None
        self._kill()
        try:
            async with asyncio.timeout(OUTPUT_CLOSE_TIMEOUT_S):
                stderr = await self._process.stderr.read()
        except TimeoutError:
            stderr = b""
        await self.close()
        return stderr.decode(errors="replace").strip()[-STDERR_QUOTE_CHARS_MAX:]

    def _kill(self) -> None:
        """SIGKILL to every process of the sandbox but our own child, the head of the launch
        chain, which then reaps what it started and exits by itself (nothing is left for the
        host's init to reap). With no other process to kill, the head itself."""
        head = self.pid if self.alive() else None
        others = [pid for pid in self._sandbox_pids(head) if pid != head]
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if head is not None and not others:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head, signal.SIGKILL)

    def _sandbox_pids(self, head: int | None) -> list[int]:
        if self._cgroup is not None:
            return self._cgroup.pids()
        if head is None:
            return []
        try:
            children = Path(f"/proc/{head}/task/{head}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in children.split()]

    async def close(self) -> None:
        """Kills whatever is left, then gives back the cgroups and the uid."""
        if self._closed:
            return
        self._closed = True
        self._kill()
        if self._process is not None:
            try:
                async with asyncio.timeout(MONITOR_EXIT_TIMEOUT_S):
                    await self._process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                await self._process.wait()
            finally:
                self._process.close_output()
        if self._channel is not None:
            self._channel.close()
        # Removing a memory cgroup that held pages blocks for milliseconds: off the loop.
        loop = asyncio.get_running_loop()
        if self._cgroup is not None and not await loop.run_in_executor(
            self._threads, self._remove_cgroup
        ):
            return  # processes that will not die: keep their uid out of circulation
        if self._uid is not None and self._plan.uids is not None:
            self._plan.uids.give_back(self._uid)

    def _remove_cgroup(self) -> bool:
        assert self._cgroup is not None
        for _ in range(CLEANUP_POLLS_MAX):
            if self._cgroup.remove():
                return True
            time.sleep(CLEANUP_POLL_INTERVAL_S)
        return False


async def _receive_frame(channel: socket.socket) -> bytes | None:
    """One message from the worker; None when it closed the channel (or died) first."""
    header = await _receive_exactly(channel, _frames.HEADER_BYTES)
    if header is None:
        return None
    return await _receive_exactly(channel, _frames.body_length(header, SANDBOX_RESULT_BYTES_MAX))


async def _receive_exactly(channel: socket.socket, n_bytes: int) -> bytes | None:
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    while n_bytes:
        chunk = await loop.sock_recv(channel, min(n_bytes, _CHUNK_BYTES))
        if not chunk:
            return None
        chunks.append(chunk)
        n_bytes -= len(chunk)
    return b"".join(chunks)


async def answer_frame(message: dict[str, Any], calls: HostCalls | None) -> bytes:
    """The framed answer to one tool call a snippet sent (`{"ok", "value"}`, and `"stop"`
    when the host stops the code at this call)."""
    answer = await _answer(message, calls)
    body: dict[str, Any] = {"ok": answer.ok, "value": answer.value}
    if answer.stop:
        body["stop"] = True
    return _frames.encode(json.dumps(body, default=str).encode())


async def _answer(message: dict[str, Any], calls: HostCalls | None) -> HostCallAnswer:
    name, arguments = message.get("call"), message.get("arguments")
    if calls is None:
        return HostCallAnswer(ok=False, value="No tools can be called from this code")
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return HostCallAnswer(ok=False, value="A tool call needs a name and keyword arguments")
    return await calls(name, arguments)


def _data_pipe(data: bytes) -> int:
    """A pipe's read end already holding `data` (small: it must fit the pipe's buffer)."""
    assert len(data) < 65536, "data for bwrap must fit in a pipe buffer"
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    return read_end


def _exit_error(returncode: int | None) -> str:
    assert returncode is not None
    # bwrap reports a worker killed by a signal as 128 + the signal; -N when bwrap itself was.
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signum in _SIGNAL_NAMES:
        return f"Tool was killed: {_SIGNAL_NAMES[signum]}"
    if signum:
        return f"Tool process exited with signal {signum}"
    return f"Tool process exited with code {returncode} before returning a result"

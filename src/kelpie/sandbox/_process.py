"""ProcessSandbox: the production sandbox tier. Each call runs in a fresh worker process
confined by bubblewrap namespaces, seccomp, Landlock, rlimits and (when the server is root)
cgroups and a uid of its own; a warm pool hides the start-up. It never runs code unconfined:
when the host cannot confine, every call answers an error saying why."""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from kelpie.sandbox import _host
from kelpie.sandbox._bwrap import SANDBOX_BASE_ENVIRONMENT
from kelpie.sandbox._gvisor import GvisorSessions
from kelpie.sandbox._host import HostPlan, HostUnfit
from kelpie.sandbox._interpreter import InterpreterSandbox
from kelpie.sandbox._pip import PIP_TMP_BYTES, PipEnvironments, RequirementError
from kelpie.sandbox._pool import WarmPool
from kelpie.sandbox._sessions import InterpreterOff, SessionsOff
from kelpie.sandbox._types import (
    SANDBOX_POOL_SIZE_DEFAULT,
    SANDBOX_TMP_BYTES_MAX,
    CodeInterpreter,
    CodeSessions,
    HostCalls,
    ToolJob,
    ToolJobResult,
)
from kelpie.sandbox._worker_process import WorkerProcess, WorkerStartError
from kelpie.sandbox._workspace import WORKSPACE_BYTES_MAX_DEFAULT, WorkspaceFull, Workspaces

_log = logging.getLogger("kelpie.sandbox")
# An agent's code session is paused (checkpointed to disk) after this long unused.
SESSION_IDLE_S_DEFAULT: Final = 120.0
SESSION_IDLE_CHECK_S_MAX: Final = 10.0
SANDBOX_THREADS: Final = 4
NAMESPACES: Final = ("user", "pid", "net", "ipc", "uts", "mount", "cgroup")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SandboxDescription:
    """What confines code on this host, for logs and tests."""

    bubblewrap_version: str
    namespaces: tuple[str, ...]
    uid_range: tuple[int, int] | None  # None: sandboxes run as the (non-root) server's uid
    seccomp: bool
    landlock_abi: int
    cgroups: tuple[str, ...]  # empty: rlimits only
    pool_size: int

    def __str__(self) -> str:
        uids = (
            f"uid {self.uid_range[0]}..{self.uid_range[1]}"
            if self.uid_range is not None
            else "the server's uid"
        )
        landlock = f"Landlock ABI {self.landlock_abi}" if self.landlock_abi else "no Landlock"
        cgroups = f"cgroup v1 {'+'.join(self.cgroups)}" if self.cgroups else "rlimits only"
        return (
            f"process sandbox: bubblewrap {self.bubblewrap_version}, "
            f"{'+'.join(self.namespaces)} namespaces, {uids}, "
            f"{'seccomp, ' if self.seccomp else ''}{landlock}, {cgroups}, pool {self.pool_size}"
        )


class ProcessSandbox:
    def __init__(
        self,
        *,
        root_dir: Path,
        pool_size: int = SANDBOX_POOL_SIZE_DEFAULT,
        bwrap_path: Path | None = None,
        workspace_bytes_max: int = WORKSPACE_BYTES_MAX_DEFAULT,
        code_sessions: bool = True,
        code_interpreter: bool = False,
        session_idle_s: float = SESSION_IDLE_S_DEFAULT,
    ) -> None:
        assert pool_size >= 0
        assert session_idle_s > 0
        self._root_dir = root_dir
        self.workspaces = Workspaces(root_dir / "workspaces", bytes_max=workspace_bytes_max)
        # The strong tier, for code that keeps its state between runs (gVisor).
        self.sessions: CodeSessions = (
            GvisorSessions(root_dir=root_dir / "sessions", workspaces=self.workspaces)
            if code_sessions
            else SessionsOff("turned off by the operator (KELPIE_CODE_SESSIONS=0)")
        )
        # The light tier, for snippets that need only their tools (Monty, confined as a
        # program of this sandbox); the code runner takes it where sessions are off.
        self.interpreter: CodeInterpreter = (
            InterpreterSandbox(
                self, state_dir=root_dir / "interpreter", protected=(root_dir.parent,)
            )
            if code_interpreter
            else InterpreterOff("turned off (KELPIE_CODE_INTERPRETER=0)")
        )
        self._session_idle_s = session_idle_s
        self._session_pauser: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._pool_size = pool_size
        self._bwrap = _host.default_bwrap_path() if bwrap_path is None else bwrap_path
        self._reason: str | None = None
        self._plan: HostPlan | None = None
        self._description: SandboxDescription | None = None
        self._checked: asyncio.Task[None] | None = None
        self._pool: WarmPool | None = None
        self._pip: PipEnvironments | None = None
        self._running: set[WorkerProcess] = set()
        self._retiring: set[asyncio.Future[None]] = set()
        # Starting and cleaning up workers blocks (vfork, exec, cgroup removal): not on the
        # event loop's thread.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=SANDBOX_THREADS, thread_name_prefix="kelpie-sandbox"
        )
        self._closed = False

    @property
    def unavailable_reason(self) -> str | None:
        return self._reason

    @property
    def description(self) -> SandboxDescription | None:
        """What is active once the host check has passed; None before or when unavailable."""
        return self._description

    @property
    def host_plan(self) -> HostPlan | None:
        """What confines code here, once the host check has passed: other tiers of this
        sandbox (long-lived programs) take their uids, cgroups and stage from it."""
        return self._plan

    @property
    def warm_workers(self) -> int:
        return 0 if self._pool is None else len(self._pool)

    async def start(self) -> None:
        assert self._checked is None, "started twice"
        self._reason = _host.quick_check(self._bwrap)
        self._checked = asyncio.create_task(self._check_host(), name="kelpie-sandbox-check")
        await self.sessions.start()
        await self.interpreter.start()
        self._session_pauser = asyncio.create_task(
            self._pause_idle_sessions(), name="kelpie-session-pauser"
        )

    async def _pause_idle_sessions(self) -> None:
        """Puts idle sessions to disk: a paused one costs no memory and survives restarts."""
        interval_s = min(self._session_idle_s / 2, SESSION_IDLE_CHECK_S_MAX)
        while True:
            # Stopped only between pauses: a pause cut short would stop the session with
            # its image unsaved.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                await self.sessions.pause_idle(self._session_idle_s)
            except Exception:  # one failed pause must not stop the next ones
                _log.exception("pausing idle code sessions failed")

    async def ready(self) -> None:
        """Waits for the host check (and the first worker) to finish."""
        assert self._checked is not None, "not started"
        await asyncio.wait({self._checked})  # neither raises nor cancels the check

    async def _check_host(self) -> None:
        if self._reason is None:
            try:
                await self._prepare()
            except HostUnfit as error:
                self._reason = str(error)
            except OSError as error:
                self._reason = f"the sandbox could not be prepared: {error}"
        if self._reason is not None:
            _log.warning("process sandbox off: %s; tools with code will not run", self._reason)
        else:
            _log.info("%s", self._description)

    async def _prepare(self) -> None:
        plan = await _host.plan(
            bwrap=self._bwrap,
            root_dir=self._root_dir,
            workspace_dir=self.workspaces.root,
            cgroup_name=f"kelpie-{os.getpid()}",
        )
        self._plan = plan
        try:
            probe = await self._start_worker()
        except WorkerStartError as error:
            await self._drop_plan()
            raise HostUnfit(f"bubblewrap could not start a sandbox here: {error}") from error
        await probe.close()
        self._pip = PipEnvironments(
            plan.pip_dir, self._run_install, chown_to_root=plan.uids is not None
        )
        self._pool = WarmPool(self._pool_size, self._start_worker)
        self._pool.start()
        self._description = SandboxDescription(
            bubblewrap_version=plan.bwrap_version,
            namespaces=NAMESPACES,
            uid_range=None
            if plan.uids is None
            else (plan.uids.first, plan.uids.first + plan.uids.count - 1),
            seccomp=True,
            landlock_abi=plan.landlock_abi,
            cgroups=() if plan.cgroups is None else tuple(plan.cgroups.dirs),
            pool_size=self._pool_size,
        )

    async def _start_worker(self) -> WorkerProcess:
        assert self._plan is not None
        worker = WorkerProcess(self._plan, self._threads)
        await worker.start()
        return worker

    async def run(self, job: ToolJob, calls: HostCalls | None = None) -> ToolJobResult:
        if self._checked is None:
            return _refused("the sandbox is not running")
        await self.ready()
        if self._closed:
            return _refused("the sandbox is not running")
        if self._reason is not None:
            return _refused(self._reason)
        try:
            sys_path = await self._requirements(job.pip_requirements)
        except RequirementError as error:
            return ToolJobResult(status="error", error=str(error))
        return await self._execute(job, sys_path, calls)

    async def _requirements(self, requirements: Sequence[str]) -> list[str]:
        if not requirements:
            return []
        assert self._pip is not None
        return [await self._pip.sys_path(requirements)]

    async def _execute(
        self,
        job: ToolJob,
        sys_path: list[str],
        calls: HostCalls | None = None,
        *,
        pip_target: Path | None = None,
    ) -> ToolJobResult:
        assert self._plan is not None
        assert self._pool is not None
        # Warm workers are started before anyone knows whose job they get: a job with a
        # workspace (mounted at start) or the network takes a worker of its own.
        special = job.network or pip_target or job.workspace
        worker = None if special else self._pool.take()
        if worker is None:
            agent_id = job.workspace
            worker = WorkerProcess(
                self._plan,
                self._threads,
                network=job.network,
                pip_target=pip_target,
                workspace=None
                if agent_id is None
                else lambda uid: self.workspaces.prepare(agent_id, uid),
                tmp_bytes=SANDBOX_TMP_BYTES_MAX if pip_target is None else PIP_TMP_BYTES,
            )
            try:
                await worker.start()
            except WorkerStartError as error:
                return ToolJobResult(status="error", error=f"Tool could not start: {error}")
            except WorkspaceFull as error:
                return ToolJobResult(status="error", error=str(error))
        self._running.add(worker)
        payload = _payload(job, [*sys_path, *self._plan.site_dirs])
        try:
            return await worker.run(payload, job.limits, calls)
        finally:
            # run() has killed the job's processes with its answer; reaping them and giving
            # back the cgroups and the uid need not hold the answer up.
            retiring = asyncio.ensure_future(self._retire(worker))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)

    async def _retire(self, worker: WorkerProcess) -> None:
        assert self._pool is not None
        try:
            await worker.close()
        finally:
            self._running.discard(worker)
            self._pool.refill()

    async def _run_install(self, job: ToolJob, target: Path) -> ToolJobResult:
        return await self._execute(job, [], None, pip_target=target)

    async def close(self) -> None:
        self._closed = True
        self._stopping.set()
        if self._session_pauser is not None:
            await asyncio.gather(self._session_pauser, return_exceptions=True)
        await self.sessions.close()
        await self.interpreter.close()
        if self._checked is not None:
            self._checked.cancel()
            await asyncio.gather(self._checked, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
        await asyncio.gather(*(worker.close() for worker in list(self._running)))
        await asyncio.gather(*self._retiring)
        await self._drop_plan()
        self._threads.shutdown(wait=False)

    async def _drop_plan(self) -> None:
        if self._plan is not None:
            await self._plan.stage.close()
            if self._plan.cgroups is not None:
                self._plan.cgroups.remove()
            if self._plan.uids is not None:
                self._plan.uids.release()


def _payload(job: ToolJob, sys_path: list[str]) -> dict[str, Any]:
    return {
        "source_code": job.source_code,
        "function_name": job.function_name,
        "arguments": dict(job.arguments),
        "environment": {**SANDBOX_BASE_ENVIRONMENT, **job.environment},
        "agent_state": None if job.agent_state is None else dict(job.agent_state),
        "tools": [{"name": t.name, "parameters": list(t.parameters)} for t in job.tools],
        "sys_path": sys_path,
    }


def _refused(reason: str) -> ToolJobResult:
    return ToolJobResult(status="error", error=f"Code cannot run confined on this host: {reason}")

"""The simulator's sandbox: custom tools run in process (the simulated tools are the
workload's own deterministic code, so there is nothing to confine), with the sandbox's
faults injected: a worker that crashes, a call that times out, a slow start.

It models the production sandbox's warm pool: `size` workers wait, pre-started; a run
takes one (or, when none is warm, starts a cold one for itself), and gives it back when the
call is over. A crash or a timeout loses the worker: the pool starts a replacement, which is
warm after `WORKER_START_S`. Once nothing runs, the pool must be back to its size (the
harness checks it at the end of a run). All time is virtual, through the sim clock.
"""

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any, Final

from kelpie.env import Clock, Entropy
from kelpie.sandbox import (
    CodeSessions,
    HostCallAnswer,
    HostCalls,
    InterpreterOff,
    SessionsOff,
    ToolAgentState,
    ToolJob,
    ToolJobResult,
    ToolStub,
    Workspaces,
)
from kelpie.sim._faults import SANDBOX_FAULTS, SANDBOX_SLOW_START_S_MAX, FaultPlan
from kelpie.sim._sessions import SessionWorld, SimSessions
from kelpie.sim._store import current_request

# Virtual time a worker takes to start (a cold one for a call, or a replacement).
WORKER_START_S: Final = 0.15
# Share of session executions after which the session is paused at once.
SESSION_PAUSE_SHARE: Final = 0.4
# What the production sandbox answers for a worker killed mid-call (SIGKILL).
CRASH_ERROR: Final = "Tool process exited with signal 9"


def timeout_error(timeout_s: float) -> str:
    """The production sandbox's error for a call that ran into its timeout."""
    return f"Tool timed out after {timeout_s:.1f} s"


class SandboxFaultInjector:
    """Before each run, draws whether its worker crashes, the call times out, or the worker
    starts slowly. One for the whole run: its stream continues across restarts."""

    def __init__(self, plan: FaultPlan, entropy: Entropy) -> None:
        self.plan = plan
        self._entropy = entropy
        self.injected: list[str] = []

    def draw(self) -> tuple[str | None, float]:
        """The fault for the next run (at most one) and, for a slow start, its delay."""
        for kind in SANDBOX_FAULTS:
            probability = getattr(self.plan, kind)
            if probability and self._entropy.random() < probability:
                self.injected.append(kind)
                faults = current_request.get()
                if faults is not None:
                    faults.kinds.append(kind)
                delay = self._entropy.random() * SANDBOX_SLOW_START_S_MAX
                return kind, delay if kind == "sandbox_slow_start" else 0.0
        return None, 0.0

    def pauses_now(self) -> bool:
        """Whether the session pauser gets to a session right after its execution (a
        simulated run has too little idle virtual time for pauses to happen by themselves)."""
        return self._entropy.random() < SESSION_PAUSE_SHARE

    def crash_point(self, calls: int) -> int:
        """After how many of an execution's `calls` tool calls its worker crashes."""
        return int(self._entropy.random() * (calls + 1))


class SimSandbox:
    def __init__(
        self,
        clock: Clock,
        faults: SandboxFaultInjector,
        *,
        pool_size: int,
        workspace_root: Path = Path("kelpie-sim-workspaces"),
    ) -> None:
        assert pool_size >= 0, "a pool cannot have fewer than no workers"
        self._clock = clock
        # Real directories (in the run's data dir): file operations are deterministic.
        self.workspaces = Workspaces(workspace_root)
        # The server's SimServer gives each sandbox the world's sessions (kelpie.sim._sessions).
        self.sessions: CodeSessions = SessionsOff("no sessions in this simulated sandbox")
        # Snippets run in process here: the interpreter tier is a production optimisation.
        self.interpreter = InterpreterOff("the simulator runs code in process")
        self._faults = faults
        self.size = pool_size
        # Every pool worker is warm, busy (running a call) or starting.
        self.warm = 0
        self.busy = 0
        self.starting = 0
        # Calls running, on pool workers or cold ones.
        self.running = 0
        self._refills: list[asyncio.Task[None]] = []
        self._started = self._closed = False

    @property
    def unavailable_reason(self) -> str | None:
        return None

    def describe(self) -> str:
        return (
            f"size={self.size} warm={self.warm} busy={self.busy} starting={self.starting}"
            f" calls running={self.running}"
        )

    def pool_consistent(self) -> bool:
        return self.warm + self.busy + self.starting == self.size

    async def start(self) -> None:
        # Start-up is retried after a fault (the harness's _prepare): fill the pool once.
        if self._started:
            return
        self._started = True
        for _ in range(self.size):
            self._replace_worker()

    async def close(self) -> None:
        """The incarnation's end (a crash, in the simulator)."""
        if isinstance(self.sessions, SimSessions):
            self.sessions.crash()
        self._closed = True
        for task in self._refills:
            task.cancel()
        self._refills.clear()

    def _replace_worker(self) -> None:
        """A lost worker (or one never started): a replacement is warm after a start."""
        self.starting += 1
        self._refills = [task for task in self._refills if not task.done()]
        self._refills.append(asyncio.ensure_future(self._warm_up()))

    def lose_worker(self) -> None:
        """A pool worker was killed (a crash, a timeout, a cancelled call)."""
        self._replace_worker()

    async def _warm_up(self) -> None:
        await self._clock.sleep(WORKER_START_S)
        self.starting -= 1
        self.warm += 1

    async def run(self, job: ToolJob, calls: HostCalls | None = None) -> ToolJobResult:
        pooled = self.warm > 0
        if pooled:
            self.warm -= 1
            self.busy += 1
        self.running += 1
        lost = True
        try:
            if not pooled:
                await self._clock.sleep(WORKER_START_S)  # a cold worker for this call
            fault, delay = self._faults.draw()
            if fault == "sandbox_slow_start":
                await self._clock.sleep(delay)
            if fault == "sandbox_crash" and job.function_name is not None:
                return ToolJobResult(status="error", error=CRASH_ERROR, stderr=CRASH_ERROR)
            if fault == "sandbox_timeout":
                await self._clock.sleep(job.limits.timeout_s)
                text = timeout_error(job.limits.timeout_s)
                return ToolJobResult(status="error", error=text, stderr=text)
            if job.function_name is None:
                crash = fault == "sandbox_crash"
                result = await self.run_code(job, calls, self._faults if crash else None, {})
                lost = crash
            else:
                result = _execute(job)
                lost = False
            return result
        finally:
            self.running -= 1
            if pooled:
                self.busy -= 1
                if not lost:
                    self.warm += 1
                elif not self._closed:
                    self.lose_worker()
                else:
                    self.starting += 1  # the process is gone: nothing replaces it

    def attach_sessions(self, world: SessionWorld, *, idle_s: float) -> None:
        """Code sessions for this incarnation, over the world's paused ones."""
        self.sessions = SimSessions(world, self, self._clock, self._faults, idle_s=idle_s)

    async def run_in_session(
        self, job: ToolJob, calls: HostCalls | None, namespace: dict[str, Any]
    ) -> tuple[ToolJobResult, bool]:
        """A code job in a session's namespace, with the sandbox's faults: the result, and
        whether the session survived it (a crash or a timeout kills the session)."""
        fault, delay = self._faults.draw()
        if fault == "sandbox_slow_start":
            await self._clock.sleep(delay)
        if fault == "sandbox_timeout":
            await self._clock.sleep(job.limits.timeout_s)
            text = timeout_error(job.limits.timeout_s)
            return ToolJobResult(status="error", error=text, stderr=text), False
        crash = fault == "sandbox_crash"
        result = await self.run_code(job, calls, self._faults if crash else None, namespace)
        return result, not crash

    async def run_code(
        self,
        job: ToolJob,
        calls: HostCalls | None,
        crash: SandboxFaultInjector | None,
        namespace: dict[str, Any],
    ) -> ToolJobResult:
        """One code-mode execution (one-shot or in a session): the planted bugs' seam."""
        return await _run_code(job, calls, crash, namespace)


def _execute(job: ToolJob) -> ToolJobResult:
    assert job.function_name is not None
    """Runs the tool's function as the production worker does: the model's arguments, and
    `agent_state` given back with the values the function left."""
    namespace: dict[str, Any] = {"__name__": "sim_tool"}
    arguments = dict(job.arguments)
    state = None if job.agent_state is None else ToolAgentState(dict(job.agent_state))
    if state is not None:
        arguments["agent_state"] = state
    try:
        exec(compile(job.source_code, "<tool>", "exec"), namespace)
        value = namespace[job.function_name](**arguments)
    except Exception as error:
        text = f"Error executing function {job.function_name}: {type(error).__name__}: {error}"
        return ToolJobResult(status="error", error=text, stderr=text)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = str(value)
    return ToolJobResult(
        status="success",
        func_return=value,
        agent_state=None if state is None else state.to_json(),
    )


async def _run_code(
    job: ToolJob,
    calls: HostCalls | None,
    crash: SandboxFaultInjector | None,
    namespace: dict[str, Any],
) -> ToolJobResult:
    """Code mode, simulated: the snippet runs with tools that record their calls, then the
        calls go to the host one by one, as the production worker sends them. So the snippets a
        workload writes must not depend on what the tools return. With `crash`, the worker dies
        between two of the calls (or before the first, or after the last). In a session,
    `namespace` is the session's own and keeps what the code leaves in it."""
    recorded: list[tuple[str, dict[str, Any]]] = []
    namespace.setdefault("__name__", "__main__")
    for stub in job.tools:
        namespace[stub.name] = _recorder(stub, recorded)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(job.source_code, "<code>", "exec"), namespace)
    except Exception as error:
        text = f"{type(error).__name__}: {error}"
        return ToolJobResult(status="error", error=text, stderr=text, traceback=text)
    stop = None if crash is None else crash.crash_point(len(recorded))
    for done, (name, arguments) in enumerate(recorded):
        if done == stop:
            break
        answer = (
            HostCallAnswer(False, "No tools can be called from this code")
            if calls is None
            else await calls(name, arguments)
        )
        if not answer.ok:
            text = f"ToolError: {answer.value}"
            return ToolJobResult(
                status="error", stdout=printed.getvalue(), error=text, traceback=text
            )
    if stop is not None:
        return ToolJobResult(status="error", error=CRASH_ERROR, stderr=CRASH_ERROR)
    return ToolJobResult(status="success", stdout=printed.getvalue())


def _recorder(stub: ToolStub, recorded: list[tuple[str, dict[str, Any]]]) -> Any:
    def call(*args: Any, **kwargs: Any) -> None:
        recorded.append((stub.name, {**dict(zip(stub.parameters, args, strict=False)), **kwargs}))

    return call

"""Code sessions under simulation: each agent's code runs in a session whose variables carry
over between executions, as in the production gVisor tier (`kelpie.sandbox.GvisorSessions`).

A session is running (in this server incarnation) or paused (its image on disk, in the
`SessionWorld` that outlives incarnations). A session idle for `idle_s` is paused, as the
production pauser does, and, since a simulated run has little idle time, a share of them
right after an execution; the next execution restores it, taking `RESTORE_S` of virtual
time.
A crash of the server (every incarnation's end in the simulator) keeps paused sessions and
the running ones that were idle long enough to have been paused; the others are lost, and so
is a session whose execution hit a sandbox crash or timeout. The world counts each agent's
losses: the simulator's ground truth, against which the workload checks what code sees (a
session's state never vanishes unless it was lost, and never leaks between agents)."""

import collections
import dataclasses
from typing import TYPE_CHECKING, Any, Final

from kelpie.env import Clock
from kelpie.sandbox import HostCalls, ToolJob, ToolJobResult

if TYPE_CHECKING:
    from kelpie.sim._sandbox import SandboxFaultInjector, SimSandbox

# Virtual time a paused session takes to come back (production: ~0.3 s, platform-notes).
RESTORE_S: Final = 0.3


@dataclasses.dataclass
class SimSession:
    namespace: dict[str, Any]
    last_used_s: float


class SessionWorld:
    """What outlives a server incarnation: paused sessions by agent, and how many times each
    agent's session state was lost (a crash while it ran or was not yet paused, or a sandbox
    fault during its execution)."""

    def __init__(self) -> None:
        self.paused: dict[str, SimSession] = {}
        self.losses: collections.Counter[str] = collections.Counter()


class SimSessions:
    """The CodeSessions of one incarnation's sandbox."""

    def __init__(
        self,
        world: SessionWorld,
        sandbox: "SimSandbox",
        clock: Clock,
        faults: "SandboxFaultInjector",
        *,
        idle_s: float,
    ) -> None:
        assert idle_s > 0, "a session is paused after a positive idle time"
        self._world = world
        self._sandbox = sandbox
        self._clock = clock
        self._faults = faults
        self._idle_s = idle_s
        self._running: dict[str, SimSession] = {}
        # Agents whose session is executing now: a crash loses it whatever its idle time.
        self._busy: set[str] = set()

    @property
    def unavailable_reason(self) -> str | None:
        return None

    async def start(self) -> None:
        return None

    async def run(
        self, agent_id: str, job: ToolJob, calls: HostCalls | None = None
    ) -> ToolJobResult:
        assert job.function_name is None, "sessions run code-mode jobs only"
        assert agent_id not in self._busy, "one execution per session at a time"
        await self.pause_idle(self._idle_s)
        session = self._running.pop(agent_id, None)
        if session is None:
            session = self._world.paused.pop(agent_id, None)
            if session is not None:
                await self._clock.sleep(RESTORE_S)
        if session is None:
            session = SimSession({"__name__": "__main__"}, self._clock.monotonic_s())
        self._busy.add(agent_id)
        try:
            result, survived = await self._sandbox.run_in_session(job, calls, session.namespace)
        finally:
            self._busy.discard(agent_id)
        if survived:
            session.last_used_s = self._clock.monotonic_s()
            if self._faults.pauses_now():
                self._world.paused[agent_id] = self.image(session)
            else:
                self._running[agent_id] = session
        else:
            self._world.losses[agent_id] += 1
        return result

    async def pause_idle(self, idle_s: float) -> int:
        now_s = self._clock.monotonic_s()
        idle = [a for a, s in self._running.items() if now_s - s.last_used_s >= idle_s]
        for agent_id in idle:
            self._world.paused[agent_id] = self.image(self._running.pop(agent_id))
        return len(idle)

    def image(self, session: SimSession) -> SimSession:
        """What pausing keeps of a session: all of it (the planted bugs' seam)."""
        return session

    async def discard(self, agent_id: str) -> None:
        self._running.pop(agent_id, None)
        self._world.paused.pop(agent_id, None)

    async def close(self) -> None:
        """A graceful stop pauses every session (the simulator's servers only crash)."""
        await self.pause_idle(0.0)

    def crash(self) -> None:
        """The process died: sessions the pauser had paused (or would have by now) are on
        disk, the rest are lost."""
        now_s = self._clock.monotonic_s()
        for agent_id, session in self._running.items():
            if now_s - session.last_used_s >= self._idle_s:
                self._world.paused[agent_id] = self.image(session)
            else:
                self._world.losses[agent_id] += 1
        for agent_id in self._busy:
            self._world.losses[agent_id] += 1
        self._running.clear()
        self._busy.clear()

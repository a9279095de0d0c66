"""The server under simulation: the real ASGI app on a real SQLite file, reached through
an in-process transport, with a fault-injecting store, and crash/restart of the process.

A crash drops the app, the services and every in-flight request; what survives is what the
store committed. Responses from a crashed incarnation never reach their client.
"""

import asyncio
import contextlib
import contextvars
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, final

import httpx

from kelpie.api import create_app
from kelpie.env import Config, Entropy, Env
from kelpie.llm import ProviderCatalog
from kelpie.memory import HashingEmbedder
from kelpie.sandbox import Workspaces
from kelpie.service import prepare
from kelpie.sim._clock import SimClock
from kelpie.sim._faults import FaultPlan
from kelpie.sim._llm import LlmFaultInjector, SimModel
from kelpie.sim._mcp import McpFaultInjector, SimMcp
from kelpie.sim._sandbox import SandboxFaultInjector, SimSandbox
from kelpie.sim._sessions import SessionWorld
from kelpie.sim._store import FaultyStore, RequestFaults, SimCrash, current_request
from kelpie.sim._web import SimWeb
from kelpie.storage import SqliteStore, Store

SIM_DB_FILE: Final = "sim.db"
# The simulated server's model provider: a configured OpenAI-compatible one. Listing models
# would need the network, so the workload never asks for them.
_SIM_OPENAI_BASE_URL: Final = "http://llm.sim/v1"

StoreWrapper = Callable[[Store], Store]
# Code sessions idle this long are paused (production: 120 s): a simulated run is minutes
# of virtual time, and pauses, restores and crashes of paused sessions should all happen.
SIM_SESSION_IDLE_S: Final = 5.0
# Builds each incarnation's sandbox (the planted bugs swap in a faulty one).
SandboxFactory = Callable[[SimClock, SandboxFaultInjector, int], SimSandbox]
# Builds each incarnation's MCP servers (the planted bugs swap in faulty ones).
McpFactory = Callable[[SimClock, McpFaultInjector], SimMcp]
# Set in the task running the audit after a restart: its requests go through while the
# server is closed to everyone else (a flag on the server would let any client's request
# slip in during the audit and race it).
_auditing: contextvars.ContextVar[bool] = contextvars.ContextVar("auditing", default=False)
AfterRestart = Callable[[], Awaitable[None]]


@final
@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a client saw: a response, or nothing (the process died under the request)."""

    status: int | None
    body: Any
    faults: tuple[str, ...]

    @property
    def crashed(self) -> bool:
        return self.status is None


@final
class SimServer:
    def __init__(
        self,
        *,
        data_dir: Path,
        entropy: Entropy,
        plan: FaultPlan,
        clock: SimClock,
        store_wrapper: StoreWrapper | None = None,
        sandbox_factory: SandboxFactory | None = None,
        mcp_factory: McpFactory | None = None,
    ) -> None:
        # Runs after each restart, before clients may send again (the audit); its requests
        # go through while the server is closed to everyone else.
        self.after_restart: AfterRestart | None = None
        self._data_dir = data_dir
        self._entropy = entropy
        self._fault_entropy = entropy.fork("faults/storage")
        # One model for the whole run: its fault stream continues across restarts.
        self.llm_faults = LlmFaultInjector(plan, entropy.fork("faults/llm"))
        self._model = SimModel(self.llm_faults)
        # Likewise the sandbox's faults; each incarnation has its own pool of workers.
        self.sandbox_faults = SandboxFaultInjector(plan, entropy.fork("faults/sandbox"))
        self._sandbox_factory = sandbox_factory or _sim_sandbox
        self.sandbox: SimSandbox | None = None
        # Code sessions paused to disk outlive incarnations, as their images do.
        self.sessions = SessionWorld()
        # And the MCP servers' faults; each incarnation has its own connections (all kept,
        # for the connection check at the end of the run).
        self.mcp_faults = McpFaultInjector(plan, entropy.fork("faults/mcp"))
        self._mcp_factory = mcp_factory or SimMcp
        self.mcps: list[SimMcp] = []
        self.plan = plan
        self._clock = clock
        self._store_wrapper = store_wrapper
        self.incarnation = 0
        self.crashes = 0
        self._faulty: FaultyStore | None = None
        self._client: httpx.AsyncClient | None = None
        self._lifespan: contextlib.AbstractAsyncContextManager[Any] | None = None
        self._up = asyncio.Event()
        self._idle = asyncio.Condition()
        self._in_flight = 0
        self._restarting = False

    async def start(self) -> None:
        await self._boot()
        self._up.set()

    async def _boot(self) -> None:
        assert not self._up.is_set(), "server already up"
        self.incarnation += 1
        config = Config(
            data_dir=self._data_dir,
            openai_base_url=_SIM_OPENAI_BASE_URL,
            code_session_idle_s=SIM_SESSION_IDLE_S,
        )
        store: Store = SqliteStore.open(self._data_dir / SIM_DB_FILE, synchronous="OFF")
        if self._store_wrapper is not None:
            store = self._store_wrapper(store)
        self._faulty = FaultyStore(store, self.plan, self._fault_entropy, self._clock)
        env = Env(
            clock=self._clock,
            # A fresh id stream per incarnation, as a restarted process has fresh entropy.
            entropy=self._entropy.fork(f"ids/{self.incarnation}"),
            config=config,
            store=self._faulty.as_store(),
            models=ProviderCatalog(config, self._clock),
            llm=self._model,
            # Deterministic and thread-free, shaped like the real one (unit vectors, 384 dims).
            embedder=HashingEmbedder(),
            sandbox=self._new_sandbox(config),
            mcp=self._new_mcp(),
            # Pages and search results derived from the URL or query: no sockets.
            web=SimWeb(),
        )
        await self._prepare(env)
        app = create_app(env)
        # The ASGI transport runs no lifespan: enter it here, so the app's background work
        # (the embedding worker) runs in the simulation as it does in production.
        self._lifespan = app.router.lifespan_context(app)
        await self._lifespan.__aenter__()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://kelpie.sim"
        )

    def _new_sandbox(self, config: Config) -> SimSandbox:
        self.sandbox = self._sandbox_factory(
            self._clock, self.sandbox_faults, config.sandbox_pool_size
        )
        self.sandbox.workspaces = Workspaces(config.data_dir / "workspaces")
        self.sandbox.attach_sessions(self.sessions, idle_s=config.code_session_idle_s)
        return self.sandbox

    def _new_mcp(self) -> SimMcp:
        mcp = self._mcp_factory(self._clock, self.mcp_faults)
        self.mcps.append(mcp)
        return mcp

    async def _prepare(self, env: Env) -> None:
        """Start-up may itself hit faults; a real operator restarts until it comes up."""
        while True:
            faults = RequestFaults()
            token = current_request.set(faults)
            try:
                await prepare(env)
                return
            except SimCrash:
                assert self._faulty is not None
                self._faulty.crashed = False
            except Exception:
                if not faults.kinds:
                    raise
            finally:
                current_request.reset(token)
            await self._clock.sleep(1.0)

    async def stop(self) -> None:
        self._up.clear()
        if self._lifespan is not None:
            await self._lifespan.__aexit__(None, None, None)
            self._lifespan = None
        if self._client is not None:
            await self._client.aclose()
        if self._faulty is not None:
            await self._faulty.close()
        if self.sandbox is not None:
            await self.sandbox.close()
        if self.mcps:
            await self.mcps[-1].close()
        self._client = self._faulty = None

    def set_plan(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.llm_faults.plan = plan
        self.sandbox_faults.plan = plan
        self.mcp_faults.plan = plan
        if self._faulty is not None:
            self._faulty._plan = plan

    async def wait_up(self) -> None:
        """Returns once the server takes requests (at once when it does)."""
        await self._up.wait()

    async def request(self, method: str, url: str, **kwargs: Any) -> Outcome:
        if not _auditing.get():
            await self._up.wait()
        client, faulty = self._client, self._faulty
        assert client is not None, "server up without a client"
        assert faulty is not None, "server up without a store"
        faults = RequestFaults()
        token = current_request.set(faults)
        self._in_flight += 1
        try:
            response = await client.request(method, url, **kwargs)
            outcome = Outcome(response.status_code, _json_or_text(response), tuple(faults.kinds))
        except SimCrash:
            outcome = Outcome(None, None, tuple(faults.kinds))
        finally:
            current_request.reset(token)
            self._in_flight -= 1
            async with self._idle:
                self._idle.notify_all()
        if faulty.crashed:
            # The process died while this request was in flight: its answer is lost.
            outcome = Outcome(None, None, outcome.faults)
            # An audit's request is run by the restart itself: waiting here for the server
            # to be up would wait for this very audit. That restart boots again instead.
            if not _auditing.get():
                await self._restart_after_crash()
        return outcome

    async def _restart_after_crash(self) -> None:
        if self._restarting:
            await self._up.wait()
            return
        self._restarting = True
        self._up.clear()
        # A new incarnation can die before it is up: its start-up work (the embedding
        # worker's writes) runs under the plan until the audit switches faults off, and a
        # store call already drawn keeps the plan it started with. Restart until one
        # incarnation comes up and passes its audit alive.
        while True:
            self.crashes += 1
            async with self._idle:
                await self._idle.wait_for(lambda: self._in_flight == 0)
            await self.stop()
            await self._boot()
            if not self._crashed() and self.after_restart is not None:
                await self._audit(self.after_restart)
            if not self._crashed():
                break
        self._restarting = False
        self._up.set()

    def _crashed(self) -> bool:
        assert self._faulty is not None, "a server booted without a store"
        return self._faulty.crashed

    async def _audit(self, after_restart: AfterRestart) -> None:
        plan = self.plan
        self.set_plan(FaultPlan.none())
        token = _auditing.set(True)
        try:
            await after_restart()
        finally:
            _auditing.reset(token)
            self.set_plan(plan)

    async def crash_and_restart(self) -> None:
        """A crash between requests (used before audits)."""
        await self._up.wait()
        assert self._faulty is not None
        self._faulty.crashed = True
        await self._restart_after_crash()


def _sim_sandbox(clock: SimClock, faults: SandboxFaultInjector, pool_size: int) -> SimSandbox:
    return SimSandbox(clock, faults, pool_size=pool_size)


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text

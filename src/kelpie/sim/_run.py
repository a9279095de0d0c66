"""One simulated run: a seed, a fault plan, a server, a few concurrent clients, audits
after every crash and at the end, and the trace hash that identifies the run."""

import asyncio
import dataclasses
import tempfile
from pathlib import Path
from typing import Final, final

from kelpie.env import Entropy
from kelpie.sandbox import TOOL_TIMEOUT_S_MAX
from kelpie.sim._checks import InvariantBroken, require
from kelpie.sim._clock import SimClock
from kelpie.sim._faults import FaultPlan
from kelpie.sim._loop import (
    SIM_LOOP_ITERATIONS_MAX,
    SIM_VIRTUAL_TIME_S_MAX,
    SimDeadlock,
    SimError,
    SimLimitExceeded,
    SimUnhandledError,
    run_simulation,
    running_sim_loop,
)
from kelpie.sim._sandbox import WORKER_START_S
from kelpie.sim._server import McpFactory, SandboxFactory, SimServer, StoreWrapper
from kelpie.sim._workload import Client, Trace, audit

CLIENTS_DEFAULT: Final = 3
STEPS_DEFAULT: Final = 150
# Once the clients are done, how long (virtual time) the sandbox pool may take to be back
# to its size: the longest call still running, then a worker's start.
POOL_QUIET_S_MAX: Final = TOOL_TIMEOUT_S_MAX + 10 * WORKER_START_S
POOL_POLL_S: Final = 0.5


@final
@dataclasses.dataclass(frozen=True)
class SimResult:
    seed: int
    plan: FaultPlan
    trace_hash: str
    operations: int
    crashes: int
    failure: str | None

    @property
    def ok(self) -> bool:
        return self.failure is None


async def _simulate(
    seed: int,
    plan: FaultPlan,
    steps: int,
    clients_count: int,
    data_dir: Path,
    store_wrapper: StoreWrapper | None,
    sandbox_factory: SandboxFactory | None = None,
    mcp_factory: McpFactory | None = None,
    *,
    trace: Trace | None = None,
    servers: list[SimServer] | None = None,
) -> tuple[Trace, int, str | None]:
    """One run; `trace` and `servers` (if given) are filled as it goes, so a caller still
    has them when a task the run left behind fails after it (SimUnhandledError)."""
    trace = Trace() if trace is None else trace
    root = Entropy(seed)
    clock = SimClock(running_sim_loop())
    server = SimServer(
        data_dir=data_dir,
        entropy=root,
        plan=plan,
        clock=clock,
        store_wrapper=store_wrapper,
        sandbox_factory=sandbox_factory,
        mcp_factory=mcp_factory,
    )
    if servers is not None:
        servers.append(server)
    clients = [
        Client(i, server.request, server.wait_up, root.fork(f"client/{i}"), clock, plan, trace)
        for i in range(clients_count)
    ]
    for client in clients:
        client.model.sessions = server.sessions
    server.after_restart = lambda: audit(clients)
    failure: str | None = None
    await server.start()
    try:
        per_client = max(1, steps // clients_count)
        runs = [asyncio.ensure_future(client.run(per_client)) for client in clients]
        try:
            # A client that finds a broken invariant ends the run at once: the others may be
            # parked behind a restart that client was running, and would wait forever.
            await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
            for run in runs:  # creation order, not the `done` set's order: deterministic
                if run.done():
                    run.result()
            for run in runs:
                await run
        finally:
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
        await check_sandbox_pool(server, clock)
        check_mcp_connections(server)
        # The end of the run is one more crash: every acknowledged write must survive it.
        await server.crash_and_restart()
    except InvariantBroken as broken:
        failure = str(broken)
    except SimError as error:
        failure = f"{type(error).__name__}: {error}"
    finally:
        await server.stop()
    return trace, server.crashes, failure


async def check_sandbox_pool(server: SimServer, clock: SimClock) -> None:
    """With the workload quiet, the sandbox's warm pool is back to its size: every worker
    a crash or a timeout killed was replaced."""
    sandbox = server.sandbox
    assert sandbox is not None, "a server up without a sandbox"
    deadline = clock.monotonic_s() + POOL_QUIET_S_MAX
    while (sandbox.running or sandbox.warm < sandbox.size) and clock.monotonic_s() < deadline:
        await clock.sleep(POOL_POLL_S)
    require(sandbox.pool_consistent(), f"sandbox pool: counts off: {sandbox.describe()}")
    require(
        not sandbox.running and sandbox.warm == sandbox.size,
        f"sandbox pool not back to its size {POOL_QUIET_S_MAX:g} s after the workload went"
        f" quiet: {sandbox.describe()}",
    )


def check_mcp_connections(server: SimServer) -> None:
    """Each incarnation kept its MCP connections: per server, no more connects than the
    connections lost (to a crash of the server, or a forget) plus one."""
    for incarnation, mcp in enumerate(server.mcps, start=1):
        wasteful = mcp.connections_not_reused()
        require(
            not wasteful,
            f"mcp connections not reused (incarnation {incarnation}, servers {wasteful}):"
            f" {mcp.describe()}",
        )


def run_seed(
    seed: int,
    *,
    steps: int = STEPS_DEFAULT,
    plan: FaultPlan | None = None,
    clients: int = CLIENTS_DEFAULT,
    shuffle: bool = True,
    store_wrapper: StoreWrapper | None = None,
    sandbox_factory: SandboxFactory | None = None,
    mcp_factory: McpFactory | None = None,
    iterations_max: int = SIM_LOOP_ITERATIONS_MAX,
    virtual_time_s_max: float = SIM_VIRTUAL_TIME_S_MAX,
) -> SimResult:
    """Runs one seed. With no plan given, the seed draws one. A run that breaks an
    invariant, deadlocks, passes the loop's iteration or virtual-time budget, or leaves an
    error nobody handled is a result with a `failure`, not an exception: a sweep goes on
    and lists the seed."""
    if plan is None:
        plan = FaultPlan.draw(Entropy(seed).fork("plan"))
    trace = Trace()
    servers: list[SimServer] = []
    with tempfile.TemporaryDirectory(prefix=f"kelpie-sim-{seed}-") as tmp:
        try:
            _, _, failure = run_simulation(
                lambda: _simulate(
                    seed,
                    plan,
                    steps,
                    clients,
                    Path(tmp),
                    store_wrapper,
                    sandbox_factory,
                    mcp_factory,
                    trace=trace,
                    servers=servers,
                ),
                seed=seed,
                shuffle=shuffle,
                iterations_max=iterations_max,
                virtual_time_s_max=virtual_time_s_max,
            )
        except SimUnhandledError as error:
            # A task of the server failed and nobody heard: a bug, reported like a broken
            # invariant (so a sweep goes on and names the seed).
            failure = f"{type(error).__name__}: {error}"
        except (SimDeadlock, SimLimitExceeded) as error:
            # The loop stopped the run (every task waits forever, or it ran past its budget):
            # the message says where each pending task waited, and the virtual time.
            failure = f"{type(error).__name__} (seed {seed}): {error}"
    return SimResult(
        seed=seed,
        plan=plan,
        trace_hash=trace.hash(),
        operations=len(trace.lines),
        crashes=servers[0].crashes if servers else 0,
        failure=failure,
    )

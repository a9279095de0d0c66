"""One simulated run: a seed, a fault plan, a server, a few concurrent clients, audits
after every crash and at the end, and the trace hash that identifies the run."""

import asyncio
import dataclasses
import tempfile
from pathlib import Path
from typing import Final, final

from kelpie.env import Entropy
from kelpie.sim._checks import InvariantBroken
from kelpie.sim._clock import SimClock
from kelpie.sim._faults import FaultPlan
from kelpie.sim._loop import SimError, run_simulation, running_sim_loop
from kelpie.sim._server import SimServer, StoreWrapper
from kelpie.sim._workload import Client, Trace, audit

CLIENTS_DEFAULT: Final = 3
STEPS_DEFAULT: Final = 150


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
) -> tuple[Trace, int, str | None]:
    root = Entropy(seed)
    clock = SimClock(running_sim_loop())
    trace = Trace()
    server = SimServer(
        data_dir=data_dir, entropy=root, plan=plan, clock=clock, store_wrapper=store_wrapper
    )
    clients = [
        Client(i, server.request, server.wait_up, root.fork(f"client/{i}"), clock, plan, trace)
        for i in range(clients_count)
    ]
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
        # The end of the run is one more crash: every acknowledged write must survive it.
        await server.crash_and_restart()
    except InvariantBroken as broken:
        failure = str(broken)
    except SimError as error:
        failure = f"{type(error).__name__}: {error}"
    finally:
        await server.stop()
    return trace, server.crashes, failure


def run_seed(
    seed: int,
    *,
    steps: int = STEPS_DEFAULT,
    plan: FaultPlan | None = None,
    clients: int = CLIENTS_DEFAULT,
    shuffle: bool = True,
    store_wrapper: StoreWrapper | None = None,
) -> SimResult:
    """Runs one seed. With no plan given, the seed draws one."""
    if plan is None:
        plan = FaultPlan.draw(Entropy(seed).fork("plan"))
    with tempfile.TemporaryDirectory(prefix=f"kelpie-sim-{seed}-") as tmp:
        trace, crashes, failure = run_simulation(
            lambda: _simulate(seed, plan, steps, clients, Path(tmp), store_wrapper),
            seed=seed,
            shuffle=shuffle,
        )
    return SimResult(
        seed=seed,
        plan=plan,
        trace_hash=trace.hash(),
        operations=len(trace.lines),
        crashes=crashes,
        failure=failure,
    )

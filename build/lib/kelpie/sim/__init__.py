"""The deterministic simulator: the whole server on one seeded, virtual-time event loop.

Owns the simulation loop (`SimEventLoop`, `run_simulation`), the simulated effects behind
the `kelpie.env` seams (`SimClock`, the fault-injecting store, the LLM fault injector), the
server under simulation (`SimServer`: the real app, crash and restart), the workload and its
reference model, and `run_seed`. One seed drives the scheduler and every other
random choice, so a failing run is replayed exactly from its seed. It may import every
layer, as it runs the whole server; nothing in the server imports it.
"""

from kelpie.sim._clock import SIM_EPOCH_US, SimClock
from kelpie.sim._faults import FaultPlan
from kelpie.sim._loop import (
    SIM_LOOP_ITERATIONS_MAX,
    SIM_VIRTUAL_TIME_S_MAX,
    SimDeadlock,
    SimError,
    SimEventLoop,
    SimForbidden,
    SimLimitExceeded,
    SimUnhandledError,
    run_simulation,
    running_sim_loop,
)
from kelpie.sim._run import SimResult, run_seed

__all__ = [
    "SIM_EPOCH_US",
    "SIM_LOOP_ITERATIONS_MAX",
    "SIM_VIRTUAL_TIME_S_MAX",
    "FaultPlan",
    "SimClock",
    "SimDeadlock",
    "SimError",
    "SimEventLoop",
    "SimForbidden",
    "SimLimitExceeded",
    "SimResult",
    "SimUnhandledError",
    "run_seed",
    "run_simulation",
    "running_sim_loop",
]

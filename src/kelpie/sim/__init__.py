"""The deterministic simulator: the whole server on one seeded, virtual-time event loop.

Owns the simulation loop (`SimEventLoop`, `run_simulation`) and the simulated effects
behind the `kelpie.env` seams (`SimClock`). One seed drives the scheduler and every other
random choice, so a failing run is replayed exactly from its seed. It may import every
layer, as it runs the whole server; nothing in the server imports it.
"""

from kelpie.sim._clock import SIM_EPOCH_US, SimClock
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

__all__ = [
    "SIM_EPOCH_US",
    "SIM_LOOP_ITERATIONS_MAX",
    "SIM_VIRTUAL_TIME_S_MAX",
    "SimClock",
    "SimDeadlock",
    "SimError",
    "SimEventLoop",
    "SimForbidden",
    "SimLimitExceeded",
    "SimUnhandledError",
    "run_simulation",
    "running_sim_loop",
]

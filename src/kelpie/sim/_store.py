"""A fault-injecting `Store`: wraps the real one and, per call, may fail it, delay it, or
crash the process before or after the write commits.

Faults are recorded against the request that suffered them (a context variable the
workload sets), so the invariant checker knows which 5xx answers a fault explains.
"""

import contextvars
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast, final

from kelpie.env import Clock, Entropy
from kelpie.sim._faults import STORAGE_LATENCY_S_MAX, FaultPlan
from kelpie.storage import StorageUnavailable, Store
from kelpie.storage._roles import only_reads

UNFAULTED_OPERATIONS: Final = frozenset({"close"})


class SimCrash(BaseException):
    """The simulated process died. A BaseException, so no handler in the server (which
    catches Exception to answer 500) can swallow it: it unwinds every request in flight."""


@dataclasses.dataclass
class RequestFaults:
    """Faults injected while serving one request."""

    kinds: list[str] = dataclasses.field(default_factory=list)


current_request: contextvars.ContextVar[RequestFaults | None] = contextvars.ContextVar(
    "current_request", default=None
)


def store_operations() -> frozenset[str]:
    return frozenset(
        name
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and callable(member)
    )


# Each operation is classified where the Store's roles declare it (`@reads`).
READ_OPERATIONS: Final = frozenset(
    name for name in store_operations() if only_reads(getattr(Store, name))
)
WRITE_OPERATIONS: Final = store_operations() - READ_OPERATIONS - UNFAULTED_OPERATIONS


@final
class FaultyStore:
    def __init__(self, inner: Store, plan: FaultPlan, entropy: Entropy, clock: Clock) -> None:
        self._inner = inner
        self._plan = plan
        self._entropy = entropy
        self._clock = clock
        self.crashed = False

    def as_store(self) -> Store:
        # Every Store operation is served by __getattr__.
        return cast(Store, self)

    def _record(self, kind: str) -> None:
        faults = current_request.get()
        if faults is not None:
            faults.kinds.append(kind)

    def _wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        is_write = name in WRITE_OPERATIONS

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.crashed:
                raise SimCrash("process already crashed")
            plan, draw = self._plan, self._entropy.random
            if plan.storage_latency and draw() < plan.storage_latency:
                self._record("storage_latency")
                await self._clock.sleep(draw() * STORAGE_LATENCY_S_MAX)
            if is_write and plan.crash and draw() < plan.crash:
                after_commit = draw() < 0.5
                self._record("crash_after_commit" if after_commit else "crash_before_commit")
                self.crashed = True
                if after_commit:
                    await method(*args, **kwargs)
                raise SimCrash(f"crash {'after' if after_commit else 'before'} commit of {name}")
            failure = plan.storage_write_failure if is_write else plan.storage_read_failure
            if failure and draw() < failure:
                kind = "storage_write_failure" if is_write else "storage_read_failure"
                self._record(kind)
                raise StorageUnavailable(f"injected {kind} in {name}")
            return await method(*args, **kwargs)

        return call

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name in UNFAULTED_OPERATIONS or name.startswith("_"):
            return attribute
        return self._wrap(name, attribute)

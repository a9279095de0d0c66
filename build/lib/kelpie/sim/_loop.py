"""The deterministic event loop: virtual time, a seeded scheduler, and no real effects.

Why this works: an asyncio loop only ever waits in one place, `selector.select(timeout)`,
where `timeout` is how long until the next timer is due (`None`: nothing is due at all).
`SimEventLoop` hands the loop a selector that never blocks: `select(timeout)` moves a
virtual clock forward by `timeout` and reports no I/O, so the next timer is due at once and
an hour of `asyncio.sleep` takes microseconds. `loop.time()` returns that virtual clock
(seconds from 0.0), so `call_later`, `asyncio.sleep`, `asyncio.timeout` and `wait_for` all
run on it. A `select(None)` with nothing ready means every task waits on something that
no timer and no callback will ever deliver: a deadlock, reported as `SimDeadlock`.

Interleavings: with `shuffle=True` the ready queue is permuted before every iteration by
a random stream forked from the run's seed (label "scheduler"), so one seed is one
interleaving and a sweep of seeds explores many. With `shuffle=False` it stays FIFO.
Timers that fall due in an iteration run after that iteration's ready callbacks, in
deadline order, as in plain asyncio.

What breaks determinism (measured, see platform-notes.md):
- iterating sets of str (order changes with PYTHONHASHSEED) and sets of plain objects,
  including the `done` set returned by `asyncio.wait` (order changes between runs) and
  `asyncio.all_tasks()`; this loop keeps its own tasks in creation order instead;
- threads: executors, `asyncio.to_thread`, `loop.getaddrinfo` and anyio's file/DNS
  helpers run in threads; they raise `SimForbidden` here;
- real sockets, pipes and subprocesses: never ready under the virtual selector, so
  registering one raises `SimForbidden`;
- `time.time`, `datetime.now`, `uuid4`, `random`, `os.urandom`: read them through the
  `Env` seam (`kelpie.sim.SimClock`, `kelpie.env.Entropy`).
Async generators left unfinished are finalised when they are garbage-collected; close them
explicitly (`contextlib.aclosing`) when their clean-up has effects.
"""

import asyncio
import collections
import re
import selectors
import weakref
from collections.abc import Callable, Coroutine, Generator, Iterator, Mapping
from contextvars import Context
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar, final

from kelpie.env import Entropy

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")

# A runaway simulation (a busy loop, a timer that re-arms forever) stops at these.
SIM_LOOP_ITERATIONS_MAX: Final = 10_000_000
SIM_VIRTUAL_TIME_S_MAX: Final = 30 * 24 * 3600.0
# Budgets for cancelling what is left once main has finished or failed.
SIM_TEARDOWN_ITERATIONS_MAX: Final = 100_000
SIM_TEARDOWN_VIRTUAL_TIME_S: Final = 3600.0
# Fixed, rather than the host monotonic clock's, so timers fire alike on every platform.
SIM_CLOCK_RESOLUTION_S: Final = 1e-9
# How many pending tasks a deadlock or limit message lists.
SIM_DEADLOCK_TASKS_LISTED_MAX: Final = 20
# How deep into a task's chain of awaits a description of it goes, and how much of a long
# chain it shows: the outermost steps (who) and the innermost (where it waits).
SIM_AWAIT_CHAIN_DEPTH_MAX: Final = 1000
SIM_AWAIT_CHAIN_OUTER_SHOWN: Final = 4
SIM_AWAIT_CHAIN_INNER_SHOWN: Final = 12

_SEAM_HINT: Final = "effects must go through the Env seam (kelpie.env.Env), not the event loop"


class SimError(Exception):
    """Root of the simulator's errors.

    SimError
    ├── SimDeadlock: every task waits and nothing will ever wake one
    ├── SimForbidden: code tried a real effect (thread, socket, process) under the loop
    ├── SimLimitExceeded: a run passed its iteration or virtual-time budget
    └── SimUnhandledError: a callback or task failed and nobody handled the exception
    """


class SimDeadlock(SimError):
    pass


class SimForbidden(SimError):
    pass


class SimLimitExceeded(SimError):
    pass


class SimUnhandledError(SimError):
    pass


def _fd_of(fileobj: "FileDescriptorLike") -> int:
    return fileobj if isinstance(fileobj, int) else fileobj.fileno()


@final
class _VirtualSelector(selectors.BaseSelector):
    """A selector that never waits: `select` hands its timeout to the loop's clock."""

    def __init__(self, on_select: Callable[[float | None], None]) -> None:
        self._on_select: Callable[[float | None], None] | None = on_select
        self._keys: dict[FileDescriptorLike, selectors.SelectorKey] = {}
        # Open only while the loop registers its own wake-up socket in its constructor.
        self._registration_open = True

    def close_registration(self) -> None:
        self._registration_open = False

    def register(
        self, fileobj: "FileDescriptorLike", events: int, data: Any = None
    ) -> selectors.SelectorKey:
        if not self._registration_open:
            raise SimForbidden(f"real I/O on {fileobj!r} under the simulator: {_SEAM_HINT}")
        fd = _fd_of(fileobj)
        assert fd not in self._keys, "file descriptor registered twice"
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: "FileDescriptorLike") -> selectors.SelectorKey:
        return self._keys.pop(_fd_of(fileobj))

    def modify(
        self, fileobj: "FileDescriptorLike", events: int, data: Any = None
    ) -> selectors.SelectorKey:
        fd = _fd_of(fileobj)
        key = self._keys[fd]._replace(events=events, data=data)
        self._keys[fd] = key
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        assert self._on_select is not None, "select on a closed selector"
        self._on_select(timeout)
        return []

    def get_map(self) -> Mapping["FileDescriptorLike", selectors.SelectorKey]:
        return self._keys

    def close(self) -> None:
        self._keys.clear()
        self._on_select = None


@final
class _OrderedWeakSet:
    """Stands in for the loop's `WeakSet` of async generators: iterates in insertion order
    (a `WeakSet` iterates in address order, which differs between runs)."""

    def __init__(self) -> None:
        self._items: weakref.WeakKeyDictionary[object, None] = weakref.WeakKeyDictionary()

    def add(self, item: object) -> None:
        self._items[item] = None

    def discard(self, item: object) -> None:
        self._items.pop(item, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[object]:
        return iter(list(self._items))


@final
class SimEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time whose scheduling is a function of one seed.

    Args:
        entropy: the run's root entropy; the scheduler forks its stream as "scheduler".
        shuffle: permute the ready queue before each iteration (else FIFO, as asyncio).
        iterations_max: loop iterations after which the run fails with SimLimitExceeded.
        virtual_time_s_max: virtual seconds after which the run fails with SimLimitExceeded.
    """

    def __init__(
        self,
        entropy: Entropy,
        *,
        shuffle: bool = True,
        iterations_max: int = SIM_LOOP_ITERATIONS_MAX,
        virtual_time_s_max: float = SIM_VIRTUAL_TIME_S_MAX,
    ) -> None:
        assert iterations_max > 0, "iterations_max must be positive"
        assert virtual_time_s_max > 0, "virtual_time_s_max must be positive"
        self.entropy = entropy
        self.shuffle = shuffle
        self.iterations = 0
        self._scheduler_rng = entropy.fork("scheduler")
        self._time_s = 0.0
        self._iterations_max = iterations_max
        self._virtual_time_s_max = virtual_time_s_max
        self._tasks: weakref.WeakKeyDictionary[asyncio.Task[Any], None] = (
            weakref.WeakKeyDictionary()
        )
        self.unhandled: list[dict[str, Any]] = []
        selector = _VirtualSelector(self._advance_time)
        super().__init__(selector)
        selector.close_registration()
        self._clock_resolution = SIM_CLOCK_RESOLUTION_S
        self._asyncgens = _OrderedWeakSet()
        self.set_exception_handler(self._record_unhandled)

    def time(self) -> float:
        return self._time_s

    def create_task(
        self,
        coro: Generator[Any, None, T] | Coroutine[Any, Any, T],
        *,
        name: object = None,
        context: Context | None = None,
    ) -> asyncio.Task[T]:
        task = super().create_task(coro, name=name, context=context)
        self._tasks[task] = None
        return task

    def tasks_pending(self) -> list[asyncio.Task[Any]]:
        """Tasks of this loop not yet done, in creation order (unlike `asyncio.all_tasks`)."""
        return [task for task in list(self._tasks) if not task.done()]

    def _run_once(self) -> None:
        self.iterations += 1
        if self.iterations > self._iterations_max:
            raise SimLimitExceeded(
                f"the simulation ran {self._iterations_max} loop iterations "
                f"(at virtual time {self._time_s:.6f} s): a busy loop?\n" + self.describe_pending()
            )
        if self.shuffle:
            self._permute_ready()
        super()._run_once()  # type: ignore[misc]  # private in asyncio, absent from typeshed

    def _permute_ready(self) -> None:
        ready: collections.deque[asyncio.Handle] = self._ready  # type: ignore[attr-defined]  # private
        if len(ready) < 2:
            return
        handles = list(ready)
        for i in range(len(handles) - 1, 0, -1):  # Fisher-Yates
            j = self._scheduler_rng.randint(0, i)
            handles[i], handles[j] = handles[j], handles[i]
        ready.clear()
        ready.extend(handles)

    def _advance_time(self, timeout_s: float | None) -> None:
        if timeout_s is None:
            raise SimDeadlock(self._describe_deadlock())
        if timeout_s <= 0:
            return
        target_s = self._time_s + timeout_s
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]  # private
        # The loop asked to wait exactly until its first timer: land on that deadline, so
        # float rounding in `now + (when - now)` can never leave the timer not yet due.
        if scheduled and timeout_s == scheduled[0].when() - self._time_s:
            target_s = scheduled[0].when()
        if target_s > self._virtual_time_s_max:
            raise SimLimitExceeded(
                f"the simulation passed {self._virtual_time_s_max} s of virtual time "
                f"(next timer at {target_s:.6f} s, after {self.iterations} loop iterations):"
                " a timer that re-arms forever?\n" + self.describe_pending()
            )
        assert target_s >= self._time_s, "virtual time went backwards"
        self._time_s = target_s

    def _describe_deadlock(self) -> str:
        return (
            f"deadlock at virtual time {self._time_s:.6f} s: nothing is ready, no timer is "
            "set, and every task waits forever\n" + self.describe_pending()
        )

    def describe_pending(self) -> str:
        """The tasks not yet done, each as its chain of awaits (outermost first), in creation
        order; the same on every replay of a seed (no task numbers, no addresses)."""
        pending = self.tasks_pending()
        lines = [f"{len(pending)} task(s) pending:"]
        lines += [f"  {describe_task(task)}" for task in pending[:SIM_DEADLOCK_TASKS_LISTED_MAX]]
        if len(pending) > SIM_DEADLOCK_TASKS_LISTED_MAX:
            lines.append(f"  ... and {len(pending) - SIM_DEADLOCK_TASKS_LISTED_MAX} more")
        return "\n".join(lines)

    def _record_unhandled(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        assert loop is self, "exception reported to another loop's handler"
        self.unhandled.append(context)

    def extend_limits_for_teardown(self) -> None:
        """Gives the clean-up after main a fresh budget, even if main used up its own."""
        self._iterations_max = self.iterations + SIM_TEARDOWN_ITERATIONS_MAX
        self._virtual_time_s_max = self._time_s + SIM_TEARDOWN_VIRTUAL_TIME_S

    # Real effects: each would block the loop, run a thread, or wait on I/O that the
    # virtual selector never reports. They fail at the call, loudly.

    def _forbid(self, what: str) -> NoReturn:
        raise SimForbidden(f"{what} under the simulator: {_SEAM_HINT}")

    def run_in_executor(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("run_in_executor (a thread)")

    def set_default_executor(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("set_default_executor (threads)")

    def getaddrinfo(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("getaddrinfo (DNS in a thread)")

    def getnameinfo(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("getnameinfo (DNS in a thread)")

    def create_connection(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("create_connection (a real socket)")

    def create_server(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("create_server (a real socket)")

    def create_datagram_endpoint(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("create_datagram_endpoint (a real socket)")

    def subprocess_exec(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("subprocess_exec (a real process)")

    def subprocess_shell(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("subprocess_shell (a real process)")

    def add_signal_handler(self, *args: object, **kwargs: object) -> NoReturn:
        self._forbid("add_signal_handler (real signals)")


_DEFAULT_TASK_NAME: Final = re.compile(r"Task-\d+")


def describe_task(task: "asyncio.Task[Any]") -> str:
    """Where a task waits: each coroutine (or generator) of its chain of awaits with its
    file and line, then what the innermost one waits on. A task's default name (a
    process-wide counter) is left out, so the text is the same on every replay."""
    steps: list[str] = []
    awaited: object = task.get_coro()
    while awaited is not None and len(steps) < SIM_AWAIT_CHAIN_DEPTH_MAX:
        frame = next(
            (
                getattr(awaited, attribute)
                for attribute in ("cr_frame", "gi_frame", "ag_frame")
                if getattr(awaited, attribute, None) is not None
            ),
            None,
        )
        name = getattr(awaited, "__qualname__", type(awaited).__name__)
        if frame is None:
            steps.append(name)
            break
        steps.append(f"{name} ({Path(frame.f_code.co_filename).name}:{frame.f_lineno})")
        awaited = next(
            (
                getattr(awaited, attribute)
                for attribute in ("cr_await", "gi_yieldfrom", "ag_await")
                if getattr(awaited, attribute, None) is not None
            ),
            None,
        )
    if len(steps) > SIM_AWAIT_CHAIN_OUTER_SHOWN + SIM_AWAIT_CHAIN_INNER_SHOWN:
        hidden = len(steps) - SIM_AWAIT_CHAIN_OUTER_SHOWN - SIM_AWAIT_CHAIN_INNER_SHOWN
        steps = [
            *steps[:SIM_AWAIT_CHAIN_OUTER_SHOWN],
            f"({hidden} more)",
            *steps[-SIM_AWAIT_CHAIN_INNER_SHOWN:],
        ]
    waiter = getattr(task, "_fut_waiter", None)  # private: the future the task waits on
    if waiter is not None:
        steps.append(f"waits on a {type(waiter).__name__}")
    name = task.get_name()
    prefix = "" if _DEFAULT_TASK_NAME.fullmatch(name) else f"[{name}] "
    return prefix + " > ".join(steps)


def running_sim_loop() -> SimEventLoop:
    """The running `SimEventLoop`; for code started by `run_simulation` to reach its loop."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, SimEventLoop), "not running under kelpie.sim.run_simulation"
    return loop


def run_simulation(
    main: Callable[[], Coroutine[Any, Any, T]],
    *,
    seed: int,
    shuffle: bool = True,
    iterations_max: int = SIM_LOOP_ITERATIONS_MAX,
    virtual_time_s_max: float = SIM_VIRTUAL_TIME_S_MAX,
) -> T:
    """Runs `main()` to completion on a fresh `SimEventLoop` seeded with `seed`.

    Tasks still pending afterwards are cancelled (in creation order) and awaited, async
    generators are closed, and the loop is closed. An exception from `main` is re-raised;
    if `main` succeeded but a callback or task raised an exception nobody handled, that
    is raised as `SimUnhandledError`.
    """
    loop = SimEventLoop(
        Entropy(seed),
        shuffle=shuffle,
        iterations_max=iterations_max,
        virtual_time_s_max=virtual_time_s_max,
    )
    try:
        result = loop.run_until_complete(main())
    finally:
        try:
            _tear_down(loop)
        finally:
            loop.close()
    _raise_unhandled(loop)
    return result


def _tear_down(loop: SimEventLoop) -> None:
    loop.extend_limits_for_teardown()
    try:
        pending = loop.tasks_pending()
        for task in pending:
            task.cancel()
        if pending:
            # Returned exceptions are dropped: these tasks were abandoned, not failed.
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except SimError as error:
        # A task that will not die must not hide the outcome of main; note it instead.
        loop.unhandled.append({"message": "teardown did not finish", "exception": error})


def _raise_unhandled(loop: SimEventLoop) -> None:
    if not loop.unhandled:
        return
    first = loop.unhandled[0]
    message = str(first.get("message", "unhandled exception"))
    exception = first.get("exception")
    error = SimUnhandledError(f"{message} ({len(loop.unhandled)} unhandled in all): {exception!r}")
    if isinstance(exception, BaseException):
        raise error from exception
    raise error

"""The warm pool: ready, locked-down workers (network off) waiting for one job each, so a
call skips the sandbox's start-up. Taking one is O(1); a background task keeps the pool full
and backs off while starts fail, so a broken host never spins or wedges callers."""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from kelpie.sandbox._worker_process import WorkerProcess, WorkerStartError

RETRY_DELAY_S_FIRST: Final = 0.1
RETRY_DELAY_S_MAX: Final = 10.0
POOL_STARTS_CONCURRENT_MAX: Final = 2

_log = logging.getLogger("kelpie.sandbox")


class WarmPool:
    def __init__(self, size: int, start_worker: Callable[[], Awaitable[WorkerProcess]]) -> None:
        assert size >= 0
        self.size = size
        self._start_worker = start_worker
        self._ready: deque[WorkerProcess] = deque()
        self._wake = asyncio.Event()
        self._filler: asyncio.Task[None] | None = None
        self._discarded: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        assert self._filler is None, "pool started twice"
        self._filler = asyncio.create_task(self._fill(), name="kelpie-sandbox-pool")

    def take(self) -> WorkerProcess | None:
        """A ready worker, or None when the pool is empty (the caller starts one itself)."""
        while self._ready:
            worker = self._ready.popleft()
            if worker.alive():
                return worker
            self._discard(worker)
        self.refill()
        return None

    def refill(self) -> None:
        """Starts replacing taken workers. The caller says when: after its job is answered,
        so the new worker's start-up does not compete with the job for the CPU."""
        self._wake.set()

    async def _fill(self) -> None:
        delay_s = RETRY_DELAY_S_FIRST
        while True:
            missing = self.size - len(self._ready)
            if missing <= 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            # A few starts at a time: each takes a core for tens of ms, and calls in flight
            # (and the server) need the CPU more than the pool's far end does.
            starts = min(missing, POOL_STARTS_CONCURRENT_MAX)
            outcomes = await asyncio.gather(
                *(self._start_one() for _ in range(starts)), return_exceptions=True
            )
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            for failure in failures:
                if not isinstance(failure, WorkerStartError | OSError):
                    raise failure
            if failures:
                _log.warning("sandbox pool: %s; retrying in %.1f s", failures[0], delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_DELAY_S_MAX)
            else:
                delay_s = RETRY_DELAY_S_FIRST

    async def _start_one(self) -> None:
        # Each start files its own worker, so a cancelled fill loses none of them.
        self._ready.append(await self._start_worker())

    def _discard(self, worker: WorkerProcess) -> None:
        task = asyncio.create_task(worker.close())
        self._discarded.add(task)
        task.add_done_callback(self._discarded.discard)

    async def close(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filler
        workers = list(self._ready)
        self._ready.clear()
        await asyncio.gather(*(w.close() for w in workers), *self._discarded)

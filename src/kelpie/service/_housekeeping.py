"""Clean-up while the server runs: stored streams of background runs are deleted once they
are no longer served. A pass runs at start-up and then when a background run ends, at most
once per HOUSEKEEPING_INTERVAL_S: there is nothing new to prune unless runs end, and a
server at rest keeps no timer armed (the simulator tells a deadlock by its having none)."""

import asyncio
import datetime as dt
import logging
from typing import Final

from kelpie.env import Env
from kelpie.errors import KelpieError
from kelpie.schemas import Run, datetime_from_us

# Letta keeps a background run's stream for three hours: after that a reader gets 410.
RUN_STREAM_RETENTION_S: Final = 3 * 3600
# How often at most expired streams are looked for, and how many runs' streams one
# transaction deletes (the store runs on the event loop: small batches keep requests flowing).
HOUSEKEEPING_INTERVAL_S: Final = 600.0
PRUNE_BATCH_RUNS: Final = 100
_US_PER_S: Final = 1_000_000

log = logging.getLogger("kelpie")


async def stream_expired(env: Env, run: Run) -> bool:
    """Whether the run's stored stream is no longer served: the run is older than the
    retention window, or its stream was pruned (also after the wall clock stepped back)."""
    now = datetime_from_us(env.clock.now_us())
    if run.created_at < now - dt.timedelta(seconds=RUN_STREAM_RETENTION_S):
        return True
    return run.background and await env.store.run_stream_pruned(run.id)


class Housekeeping:
    def __init__(self, env: Env) -> None:
        self._env = env
        # Monotonic time before which no new pass starts, and the pass in progress.
        self._due_s = -float("inf")
        self._pass: asyncio.Task[int] | None = None

    def run_ended(self) -> asyncio.Task[int] | None:
        """A background run ended (or the server started): a pass starts unless one ran
        in the last interval or one is running. Returns the pass started, if any."""
        now_s = self._env.clock.monotonic_s()
        if now_s < self._due_s or (self._pass is not None and not self._pass.done()):
            return None
        self._due_s = now_s + HOUSEKEEPING_INTERVAL_S
        self._pass = asyncio.ensure_future(self.prune_logged())
        return self._pass

    async def prune_logged(self) -> int:
        """One pass; a failure is logged, and the next run's end tries again."""
        try:
            pruned = await self.prune_run_streams()
        except KelpieError as error:
            log.warning("housekeeping: pruning run streams failed: %s", error.detail)
            self._due_s = -float("inf")
            return 0
        if pruned:
            log.info("housekeeping: deleted the expired streams of %d runs", pruned)
        return pruned

    async def close(self) -> None:
        if self._pass is not None:
            self._pass.cancel()
            await asyncio.gather(self._pass, return_exceptions=True)

    async def prune_run_streams(self) -> int:
        """Deletes the streams of ended background runs created before the retention
        window; returns how many runs' streams went. A running run's stream is kept."""
        before_us = self._env.clock.now_us() - RUN_STREAM_RETENTION_S * _US_PER_S
        total = 0
        while True:
            pruned = await self._env.store.prune_run_streams(before_us, PRUNE_BATCH_RUNS)
            total += pruned
            if pruned < PRUNE_BATCH_RUNS:
                return total
            await asyncio.sleep(0)  # requests go between batches

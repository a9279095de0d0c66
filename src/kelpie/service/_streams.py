"""Where a turn's stream items go.

`LiveStream` (a plain SSE request): items go to the one client, each step's once the step
is committed. `StoredStream` (a background run): every item gets a seq id and is stored
before anyone sees it (a step's items in the step's own transaction; token deltas in small
batches), then readers are woken. Any number of readers follow a stored stream from any
seq id (`follow_run`), so a client that lost its connection resumes exactly where it was:
nothing it saw is ever missing from the store, nothing is sent twice.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Final

from kelpie.agent import Item, WriteWithEvents
from kelpie.env import Env
from kelpie.errors import Unavailable
from kelpie.schemas import STREAM_DONE, RunEvent

# Token deltas wait at most this long to be stored (and sent) together.
DELTA_FLUSH_DELAY_S: Final = 0.02
# A reader with nothing new looks at the store again after this long, woken or not.
FOLLOW_POLL_S_MAX: Final = 1.0
_ERROR_TYPE: Final = "error_message"


def to_event(run_id: str, seq_id: int, item: Item | None) -> RunEvent:
    """An item as stored: error items are SSE `error` events; None is the end marker."""
    if item is None:
        return RunEvent(run_id=run_id, seq_id=seq_id, data=STREAM_DONE)
    event = "error" if item.get("message_type") == _ERROR_TYPE else None
    data = json.dumps({**item, "seq_id": seq_id}, ensure_ascii=False, default=str)
    return RunEvent(run_id=run_id, seq_id=seq_id, event=event, data=data)


class LiveStream:
    """A plain stream: one reader, nothing stored."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()

    async def delta(self, item: Item) -> None:
        self.queue.put_nowait(item)

    async def commit(self, items: Sequence[Item], write: WriteWithEvents, *, final: bool) -> None:
        await write(())
        for item in items:
            self.queue.put_nowait(item)
        if final:
            self.queue.put_nowait(None)

    async def close(self) -> None:
        """Ends the reader's stream if the turn died before its final commit."""
        self.queue.put_nowait(None)


class StoredStream:
    """A background run's stream: items stored with seq ids, then readers woken."""

    def __init__(self, env: Env, run_id: str, *, last_seq: int = 0) -> None:
        self._env = env
        self.run_id = run_id
        self._seq = last_seq
        self._pending: list[RunEvent] = []
        self._write_lock = asyncio.Lock()
        self._flush: asyncio.Task[None] | None = None
        # A delta batch's store failure other than Unavailable (a bug, or the process
        # dying): raised by the next commit, so it fails the turn instead of vanishing.
        self._flush_failure: BaseException | None = None
        self._changed = asyncio.Event()
        # finished: the end marker is stored; closed: the turn is over (ended or died).
        self.finished = False
        self.closed = False

    def _next(self, item: Item | None) -> RunEvent:
        self._seq += 1
        return to_event(self.run_id, self._seq, item)

    async def delta(self, item: Item) -> None:
        self._pending.append(self._next(item))
        if self._flush is None:
            self._flush = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await self._env.clock.sleep(DELTA_FLUSH_DELAY_S)
        async with self._write_lock:
            self._flush = None
            events, self._pending = self._pending, []
            try:
                await self._env.store.append_run_events(events)
            except Unavailable:
                # Kept, in order, for the next flush or the step's commit: a token stream's
                # tool call is only ever sent as deltas, so a dropped batch would leave a
                # reader a tool return without its call (sim seed 12005).
                self._pending = [*events, *self._pending]
                return
            except asyncio.CancelledError:
                raise
            except BaseException as failure:  # re-raised by commit()
                self._flush_failure = failure
                return
            self._wake()

    async def commit(self, items: Sequence[Item], write: WriteWithEvents, *, final: bool) -> None:
        async with self._write_lock:
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            if self._flush_failure is not None:
                failure, self._flush_failure = self._flush_failure, None
                raise failure
            events = [*self._pending, *(self._next(item) for item in items)]
            if final:
                events.append(self._next(None))
            self._pending = []
            await write(tuple(events))
            self.finished = self.finished or final
            self._wake()

    async def close(self) -> None:
        """The turn is over; if it died, the run's end is written by whoever fails it (or,
        if even that write failed, by start-up recovery)."""
        if self._flush is not None:
            self._flush.cancel()
        self.closed = True
        self._wake()

    def closing_events(self, items: Sequence[Item]) -> list[RunEvent]:
        """Events that end the stream of a turn that died outside a step: the caller stores
        them with the failed run."""
        self.finished = True
        return [*(self._next(item) for item in items), self._next(None)]

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def watch(self) -> asyncio.Event:
        """Set at the next store of events. Take it before reading, then wait on it, so a
        store between the read and the wait is never missed."""
        return self._changed


async def follow_run(
    env: Env, run_id: str, starting_after: int, batch_size: int, live: StoredStream | None
) -> AsyncIterator[RunEvent]:
    """The run's stored events after `starting_after`, then each new one as it is stored,
    until the end marker. With no live stream here (the run is over, or died without
    storing its end), what is stored is all there is."""
    cursor = starting_after
    while True:
        watch = live.watch() if live is not None else None
        closed = live is None or live.closed
        events = await env.store.list_run_events(run_id, cursor, batch_size)
        for event in events:
            yield event
            cursor = event.seq_id
            if event.data == STREAM_DONE:
                return
        if events:
            continue
        if closed or watch is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watch.wait(), FOLLOW_POLL_S_MAX)

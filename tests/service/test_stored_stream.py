"""A background run's stream stores token deltas in small batches, off the turn's path.
A batch the store refuses must never vanish silently: after an outage it goes with the next
write (a token stream's tool call exists only as deltas), anything else fails the turn at its
next commit."""

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import cast

import pytest

from kelpie.env import Env, SystemClock
from kelpie.errors import Unavailable
from kelpie.schemas import RunEvent
from kelpie.service._streams import DELTA_FLUSH_DELAY_S, StoredStream

DELTA = {"message_type": "assistant_message", "content": "Hel"}


class RefusingStore:
    def __init__(self, failure: BaseException) -> None:
        self.failure = failure
        self.attempts = 0

    async def append_run_events(self, events: Sequence[RunEvent]) -> None:
        self.attempts += 1
        raise self.failure


def _stream(store: RefusingStore) -> StoredStream:
    return StoredStream(cast(Env, SimpleNamespace(clock=SystemClock(), store=store)), "run-1")


async def _commit_after_a_flushed_delta(store: RefusingStore) -> list[RunEvent]:
    written: list[RunEvent] = []

    async def write(events: tuple[RunEvent, ...]) -> None:
        written.extend(events)

    stream = _stream(store)
    await stream.delta(DELTA)
    await asyncio.sleep(DELTA_FLUSH_DELAY_S * 5)
    assert store.attempts == 1, "the delta batch was not flushed on its own"
    await stream.commit([], write, final=True)
    await stream.close()
    return written


def test_deltas_an_outage_refused_go_with_the_step_commit_in_order() -> None:
    written = asyncio.run(_commit_after_a_flushed_delta(RefusingStore(Unavailable("down"))))
    assert [event.seq_id for event in written] == [1, 2], "the refused delta, then the end"
    assert '"Hel"' in written[0].data


def test_any_other_store_failure_fails_the_next_commit() -> None:
    failure = RuntimeError("constraint failed")
    with pytest.raises(RuntimeError, match="constraint failed"):
        asyncio.run(_commit_after_a_flushed_delta(RefusingStore(failure)))

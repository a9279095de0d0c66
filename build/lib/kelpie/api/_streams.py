"""Letta's SSE format: `data: <json>` lines without event names (the SDKs only yield unnamed
events), a ping first and after every 20 s of silence, the stop reason and usage at the
end, an `event: error` on failure, and `data: [DONE]` last.

Two sources: a live turn's queue (a plain stream), and a background run's stored events
(a stream anyone can follow or resume from a seq id)."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from sse_starlette import EventSourceResponse
from sse_starlette.event import ServerSentEvent

from kelpie.agent import closing_items
from kelpie.env import Env
from kelpie.errors import KelpieError
from kelpie.schemas import STREAM_DONE, RunEvent, UsageStatistics, datetime_from_us
from kelpie.service import LiveStream, StartedTurn

PING_INTERVAL_S: Final = 20.0
_END: Final = object()


def sse_response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """Letta pings are the only keep-alives: the library's own comment pings (real time
    in their text) are off."""
    return EventSourceResponse(events, sep="\n", ping=0)


def _data(item: Any) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(item, ensure_ascii=False, default=str))


def _ping(env: Env, run_id: str) -> ServerSentEvent:
    now = datetime_from_us(env.clock.now_us()).isoformat()
    return _data({"message_type": "ping", "id": f"ping-{run_id}", "run_id": run_id, "date": now})


def _sse(item: dict[str, Any] | None) -> ServerSentEvent:
    if item is None:
        return ServerSentEvent(data=STREAM_DONE)
    if item.get("message_type") == "error_message":
        return ServerSentEvent(event="error", data=json.dumps(item, ensure_ascii=False))
    return _data(item)


async def _with_pings(
    env: Env, run_id: str, source: "asyncio.Queue[Any]", include_pings: bool
) -> AsyncIterator[Any]:
    """Items from `source` until `_END`, with pings while it is quiet."""
    if include_pings:
        yield _ping(env, run_id)
    while True:
        try:
            item = await asyncio.wait_for(source.get(), PING_INTERVAL_S)
        except TimeoutError:
            if include_pings:
                yield _ping(env, run_id)
            continue
        if item is _END:
            return
        yield item


async def live_events(
    env: Env, started: StartedTurn, stream: LiveStream, *, include_pings: bool
) -> AsyncIterator[ServerSentEvent]:
    """Runs the turn in its own task (it finishes and commits even if the client goes
    away) and relays what it sends."""
    run = started.turn.run
    relay: asyncio.Queue[Any] = asyncio.Queue()
    task = asyncio.ensure_future(started.run())
    # A client that leaves does not stop the turn; its failure (already recorded on the
    # run) is read here so it is not reported as never retrieved.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    ended = False

    async def pump() -> None:
        try:
            while (item := await stream.queue.get()) is not None:
                relay.put_nowait(item)
        finally:
            relay.put_nowait(_END)

    pumping = asyncio.ensure_future(pump())
    try:
        async for item in _with_pings(env, run.id, relay, include_pings):
            yield item if isinstance(item, ServerSentEvent) else _sse(item)
        ended = True
    finally:
        pumping.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if ended and task.done() and not task.cancelled() and task.exception() is not None:
        error = task.exception()
        detail = error.detail if isinstance(error, KelpieError) else str(error)
        usage = UsageStatistics(run_ids=[run.id])
        for item in closing_items(run.id, "error", usage, ("internal_error", detail, detail)):
            yield _sse(item)
        yield _sse(None)
    elif ended:
        yield _sse(None)


async def stored_events(
    env: Env, run_id: str, events: AsyncIterator[RunEvent], *, include_pings: bool
) -> AsyncIterator[ServerSentEvent]:
    """A background run's stored events as they come. A stream that cannot be read to its
    end (a run that died without storing it, a failed read) still ends: with an error."""
    relay: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                relay.put_nowait(event)
        except KelpieError as error:
            relay.put_nowait(error)
        finally:
            relay.put_nowait(_END)

    pumping = asyncio.ensure_future(pump())
    done = False
    problem = "The run ended without finishing its stream; see the run's status."
    try:
        async for event in _with_pings(env, run_id, relay, include_pings):
            if isinstance(event, ServerSentEvent):  # a ping
                yield event
            elif isinstance(event, KelpieError):
                problem = f"The run's stream could not be read: {event.detail}"
            else:
                done = event.data == STREAM_DONE
                yield ServerSentEvent(data=event.data, event=event.event)
    finally:
        pumping.cancel()
    if not done:
        usage = UsageStatistics(run_ids=[run_id])
        for item in closing_items(run_id, "error", usage, ("stream_incomplete", problem, problem)):
            yield _sse(item)
        yield _sse(None)

"""Letta's SSE format: `data: <json>` lines without event names (the SDKs only yield unnamed
events), pings while the run is quiet, a stop reason and usage at the end, an `event: error`
on failure, and `data: [DONE]` last."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from sse_starlette.event import ServerSentEvent

from kelpie.agent import usage_statistics
from kelpie.env import Env
from kelpie.errors import KelpieError
from kelpie.llm import LlmError
from kelpie.schemas import StopReasonOut, datetime_from_us
from kelpie.service import StartedTurn

PING_INTERVAL_S: Final = 20.0
_DONE: Final = object()


def _data(item: Any) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(item, ensure_ascii=False, default=str))


async def turn_events(
    env: Env,
    started: StartedTurn,
    queue: asyncio.Queue[Any],
    *,
    include_pings: bool,
) -> AsyncIterator[ServerSentEvent]:
    """Runs the turn in its own task (it finishes and commits even if the client goes
    away) and relays what it emits."""
    run = started.turn.run
    task = asyncio.ensure_future(started.run())
    task.add_done_callback(lambda _: queue.put_nowait(_DONE))

    def ping() -> ServerSentEvent:
        now = datetime_from_us(env.clock.now_us()).isoformat()
        return _data({"message_type": "ping", "id": f"ping-{run.id}", "run_id": run.id,
                      "date": now})  # fmt: skip

    if include_pings:
        yield ping()
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), PING_INTERVAL_S)
        except TimeoutError:
            if include_pings:
                yield ping()
            continue
        if item is _DONE:
            break
        yield _data(item)
    try:
        result = task.result()
    except KelpieError as error:
        yield _data(StopReasonOut(stop_reason="error").model_dump(mode="json"))
        yield _error(run.id, "internal_error", error.detail)
        yield ServerSentEvent(data="[DONE]")
        return
    yield _data(StopReasonOut(stop_reason=result.stop_reason).model_dump(mode="json"))
    if result.error is not None:
        yield _error(run.id, _error_type(result.error), str(result.error))
    else:
        usage = usage_statistics(result.usage, result.steps, run.id)
        yield _data(usage.model_dump(mode="json"))
    yield ServerSentEvent(data="[DONE]")


def _error_type(error: LlmError) -> str:
    return error.error_type


def _error(run_id: str, error_type: str, message: str) -> ServerSentEvent:
    body = {
        "message_type": "error_message",
        "run_id": run_id,
        "error_type": error_type,
        "message": message,
        "detail": message,
    }
    return ServerSentEvent(event="error", data=json.dumps(body))

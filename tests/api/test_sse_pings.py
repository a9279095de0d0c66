"""Keep-alive pings (letta-api.md §2.12): one when a stream opens, then one after every
20 s without output, so clients and proxies never time a slow run out. Checked in virtual
time under the simulator's event loop: 45 quiet seconds take no real time."""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator
from typing import cast

from sse_starlette.event import ServerSentEvent

from kelpie.api._streams import PING_INTERVAL_S, stored_events
from kelpie.env import Env
from kelpie.schemas import STREAM_DONE, RunEvent
from kelpie.sim import SimClock, run_simulation, running_sim_loop

RUN_ID = "run-00000000-0000-4000-8000-000000000000"
QUIET_S = 45.0


def _stream(include_pings: bool) -> list[ServerSentEvent]:
    async def main() -> list[ServerSentEvent]:
        clock = SimClock(running_sim_loop())
        env = cast(Env, types.SimpleNamespace(clock=clock))

        async def events() -> AsyncIterator[RunEvent]:
            await clock.sleep(QUIET_S)
            stop = {"message_type": "stop_reason", "stop_reason": "end_turn", "seq_id": 1}
            yield RunEvent(run_id=RUN_ID, seq_id=1, data=json.dumps(stop))
            yield RunEvent(run_id=RUN_ID, seq_id=2, data=STREAM_DONE)

        return [e async for e in stored_events(env, RUN_ID, events(), include_pings=include_pings)]

    return run_simulation(main, seed=1)


def _kinds(sent: list[ServerSentEvent]) -> list[str]:
    kinds = []
    for event in sent:
        data = str(event.data)
        kinds.append("done" if data == STREAM_DONE else json.loads(data)["message_type"])
    return kinds


def test_a_ping_opens_the_stream_and_follows_every_quiet_interval() -> None:
    sent = _stream(include_pings=True)

    quiet_pings = int(QUIET_S // PING_INTERVAL_S)
    assert _kinds(sent) == ["ping"] * (1 + quiet_pings) + ["stop_reason", "done"]
    ping = json.loads(str(sent[0].data))
    assert ping["run_id"] == RUN_ID
    assert ping["id"].startswith("ping-")


def test_no_pings_when_the_client_asks_for_none() -> None:
    assert _kinds(_stream(include_pings=False)) == ["stop_reason", "done"]

"""One send, whatever the route: a JSON reply, a live stream, or a background run whose
stored stream the client follows (and a retried background send follows the run it
already started)."""

import datetime as dt
from typing import Final

from fastapi import Response
from sse_starlette import EventSourceResponse

from kelpie.api._deps import Services
from kelpie.api._routing import json_response
from kelpie.api._streams import live_events, stored_events
from kelpie.errors import Expired, ValidationFailed
from kelpie.runtime import ConversationBusy
from kelpie.schemas import LettaRequest, RetrieveStreamRequest, Run, datetime_from_us
from kelpie.service import LiveStream

# Stored events a follower reads per query, and how often it looks for a run's events
# when the run is not in progress in this process.
FOLLOW_BATCH: Final = 100
FOLLOW_POLL_S: Final = 0.1
# Letta keeps a background run's stream for three hours.
RUN_STREAM_RETENTION_S: Final = 3 * 3600
_EXPIRED: Final = "Run was created more than 3 hours ago, and is now expired."


def check_json_flags(request: LettaRequest) -> None:
    """Letta refuses stream-only flags on a JSON send."""
    for flag in ("stream_tokens", "background"):
        if getattr(request, flag):
            raise ValidationFailed(f"{flag}=true requires streaming=true")
    if "include_pings" in request.model_fields_set and not request.include_pings:
        raise ValidationFailed("include_pings=false requires streaming=true")


def follow_response(services: Services, run: Run, *, include_pings: bool) -> Response:
    request = RetrieveStreamRequest(
        include_pings=include_pings, batch_size=FOLLOW_BATCH, poll_interval=FOLLOW_POLL_S
    )
    return follow_stream(services, run, request)


def follow_stream(services: Services, run: Run, request: RetrieveStreamRequest) -> Response:
    """The run's stored stream after `starting_after`, live while it runs."""
    now = datetime_from_us(services.messages.env.clock.now_us())
    if run.created_at < now - dt.timedelta(seconds=RUN_STREAM_RETENTION_S):
        raise Expired(_EXPIRED)
    messages = services.messages
    events = messages.follow(run, request.starting_after, request.batch_size, request.poll_interval)
    stream = stored_events(messages.env, run.id, events, include_pings=request.include_pings)
    return EventSourceResponse(stream, sep="\n")


async def send(
    services: Services,
    agent_id: str,
    conversation_id: str | None,
    request: LettaRequest,
    *,
    stream: bool,
) -> Response:
    messages = services.messages
    background = stream and request.background
    run = messages.new_run(agent_id, conversation_id, request, background=background)
    if not stream:
        check_json_flags(request)
        started = await messages.start_turn(request, run)
        result = await started.run()
        return json_response(messages.response(started.agent, request, result))
    if not background:
        live = LiveStream()
        started = await messages.start_turn(request, run, stream=live)
        events = live_events(messages.env, started, live, include_pings=request.include_pings)
        return EventSourceResponse(events, sep="\n")
    retry = await messages.find_retry(run)
    if retry is not None:
        return follow_response(services, retry.run, include_pings=request.include_pings)
    try:
        started = await messages.start_turn(request, run, stream=messages.stored_stream(run))
    except ConversationBusy:
        # The same send, retried while the first was still starting: follow that one.
        retry = await messages.find_retry(run)
        if retry is None:
            raise
        return follow_response(services, retry.run, include_pings=request.include_pings)
    messages.run_detached(started)
    return follow_response(services, run, include_pings=request.include_pings)

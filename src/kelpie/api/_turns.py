"""One send, whatever the route: a JSON reply, a live stream, or a background run whose
stored stream the client follows (and a retried background send follows the run it
already started)."""

from typing import Final

from fastapi import Response

from kelpie.api._deps import Services
from kelpie.api._routing import json_response
from kelpie.api._streams import live_events, sse_response, stored_events
from kelpie.errors import Expired, ValidationFailed
from kelpie.runtime import ConversationBusy
from kelpie.schemas import LettaRequest, RetrieveStreamRequest, Run
from kelpie.service import LiveStream, stream_expired

# Stored events a follower reads per query.
FOLLOW_BATCH: Final = 100
_EXPIRED: Final = "Run was created more than 3 hours ago, and is now expired."


def check_json_flags(request: LettaRequest) -> None:
    """Letta refuses stream-only flags on a JSON send."""
    for flag in ("stream_tokens", "background"):
        if getattr(request, flag):
            raise ValidationFailed(f"{flag}=true requires streaming=true")
    if "include_pings" in request.model_fields_set and not request.include_pings:
        raise ValidationFailed("include_pings=false requires streaming=true")


async def follow_response(services: Services, run: Run, *, include_pings: bool) -> Response:
    request = RetrieveStreamRequest(include_pings=include_pings, batch_size=FOLLOW_BATCH)
    return await follow_stream(services, run, request)


async def follow_stream(services: Services, run: Run, request: RetrieveStreamRequest) -> Response:
    """The run's stored stream after `starting_after`, live while it runs; 410 once it is
    no longer kept."""
    if await stream_expired(services.messages.env, run):
        raise Expired(_EXPIRED)
    messages = services.messages
    # poll_interval is accepted and unused: readers are woken as events are stored.
    events = messages.follow(run, request.starting_after, request.batch_size)
    stream = stored_events(messages.env, run.id, events, include_pings=request.include_pings)
    return sse_response(stream)


async def send(
    services: Services,
    agent_id: str,
    conversation_id: str | None,
    request: LettaRequest,
    *,
    stream: bool,
) -> Response:
    messages = services.messages
    if not stream:
        check_json_flags(request)
        return json_response(await messages.send_and_wait(agent_id, conversation_id, request))
    background = request.background
    run = messages.new_run(agent_id, conversation_id, request, background=background)
    if not background:
        live = LiveStream()
        started = await messages.start_turn(request, run, stream=live)
        events = live_events(messages.env, started, live, include_pings=request.include_pings)
        return sse_response(events)
    retry = await messages.find_retry(run)
    if retry is not None:
        return await follow_response(services, retry.run, include_pings=request.include_pings)
    try:
        started = await messages.start_turn(request, run, stream=messages.stored_stream(run))
    except ConversationBusy:
        # The same send, retried while the first was still starting: follow that one.
        retry = await messages.find_retry(run)
        if retry is None:
            raise
        return await follow_response(services, retry.run, include_pings=request.include_pings)
    messages.run_detached(started)
    return await follow_response(services, run, include_pings=request.include_pings)

"""The error responses each operation documents in /openapi.json, derived from what can
answer it: the guard in front of every route, request validation, and the services behind
it. Clients and generators read the schema, so it must list every status the server can
send and the body it sends with it: `{"detail": "<sentence>"}`, never FastAPI's default
`detail` array (`HTTPValidationError`), which Kelpie does not send (422s included).

`LettaRoute` calls `error_responses` for every route; a route that raises an error outside
these rules names it with `raises(...)` in its `responses`, and a route that streams
declares `EVENT_STREAM`."""

from collections.abc import Iterable, Iterator
from typing import Any, Final, get_args

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from pydantic import BaseModel, Field

from kelpie.api._deps import ServicesDep
from kelpie.api._errors import status_of
from kelpie.api._limits import OPEN_PATHS
from kelpie.errors import InvalidInput, KelpieError, NotFound

# The dependency that hands a handler the services (and with them the database).
_SERVICES: Final = get_args(ServicesDep)[1].dependency
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

Responses = dict[int | str, dict[str, Any]]


class ErrorResponse(BaseModel):
    """Every error Kelpie answers with, whatever its status."""

    detail: str = Field(description="What went wrong, as a sentence for people")
    run_id: str | None = Field(
        default=None,
        description="On a 409 for a busy agent or conversation: the run it is busy with",
    )


_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "A value in the request is wrong",
    401: "Authentication is on (a password or API keys) and the request offers no valid one",
    403: "The credential is valid but may not do this",
    404: "An object the request names does not exist",
    408: "The request body stopped arriving",
    409: "The request clashes with the current state (a name taken, a run in progress)",
    410: "The object existed but is no longer kept",
    413: "The request body, or what it would store, is over a limit",
    422: "The request breaks a field rule (a type, a pattern, a range, malformed JSON)",
    429: "Too many failed authentication attempts, or requests for the key; see Retry-After",
    503: "A dependency (the database, a model provider, an MCP server) failed; retry",
}


# A 200 that is a stream of server-sent events (Letta's streaming sends and follows). A
# route that only streams also says `response_class=Response`: no JSON 200 to document.
# `itemSchema` describes each event (OpenAPI 3.2's reading, which tools apply to 3.1 too).
_EVENT: Final = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": "A LettaMessage (or ping, stop reason, usage) as JSON; last `[DONE]`",
        },
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
EVENT_STREAM: Final[Responses] = {
    200: {
        "description": "Successful Response; server-sent events when the request streams",
        "content": {"text/event-stream": {"itemSchema": _EVENT}},
    }
}


def _response(status: int) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}


def raises(*errors: type[KelpieError] | int) -> Responses:
    """The responses of errors (or statuses) a route raises beyond `error_responses`."""
    statuses = {e if isinstance(e, int) else status_of(e) for e in errors}
    return {status: _response(status) for status in sorted(statuses)}


def _dependants(root: Dependant) -> Iterator[Dependant]:
    """The route's own dependant and every dependency under it."""
    pending = [root]
    while pending:
        dependant = pending.pop()
        yield dependant
        pending.extend(dependant.dependencies)


def error_responses(
    path: str, methods: Iterable[str], dependant: Dependant, *, declared_body: bool = False
) -> Responses:
    """What can answer a route besides its handler's success:
    - the guard: 401/429 in password mode (all but `OPEN_PATHS`); 413/408 for a body;
    - request validation: 422 when the route takes any parameter or body;
    - the services, when the route reaches them: 503 (storage or a provider failed); with
      input, 400 and 404 (a wrong value, an id of nothing); when it writes, 409."""
    methods = frozenset(methods)
    everything = list(_dependants(dependant))
    # A handler that reads its body by hand declares it in `openapi_extra` (`declared_body`).
    takes_body = declared_body or any(d.body_params for d in everything)
    takes_input = takes_body or bool(get_flat_params(dependant))
    reaches_services = any(d.call is _SERVICES for d in everything)
    statuses: set[int] = set()
    if path not in OPEN_PATHS:
        statuses |= {401, 429}
    if takes_body or methods & _BODY_METHODS:
        statuses |= {408, 413}
    if takes_input:
        statuses.add(422)
    if reaches_services:
        statuses.add(503)
        if takes_input:
            statuses |= {status_of(InvalidInput), status_of(NotFound)}
        if methods - _READ_METHODS:
            statuses.add(409)
    return {status: _response(status) for status in sorted(statuses)}

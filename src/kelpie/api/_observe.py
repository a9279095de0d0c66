"""What the API edge observes of every request: one log line (method, route template,
status, duration, and the agent and run ids when the path has them), the request
metrics, and with tracing on a span that everything the request runs nests under; and
`/metrics`, where the server's metrics are scraped.

Two pure ASGI middlewares do it. `RequestObserver`, outermost, times the request on the
Env clock, sees the status go out and records both when the response is over (a stream's
end included). `RouteTagger`, innermost, hands it the route template and path parameters
that routing put in the scope: a middleware between them may pass a copy of the scope on
(the guard does, to drop a trailing slash), so the outer one cannot read them itself.

Never logged: headers, bodies and query strings (credentials and secrets travel there).
Scrapes of `/metrics` are neither logged nor counted.
"""

import logging
from typing import Any, Final, final

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kelpie.api._deps import Services
from kelpie.env import Clock, Env
from kelpie.errors import KelpieError
from kelpie.mcp import McpConnections
from kelpie.obs import METRICS_CONTENT_TYPE, UNROUTED, Metrics, Tracing
from kelpie.sandbox import ProcessSandbox

METRICS_PATH: Final = "/metrics"
REQUEST_LOGGER: Final = "kelpie.http"
# Path parameters a request line carries when the route has them.
LOGGED_PATH_PARAMS: Final = ("agent_id", "run_id")
# What a request line quotes of a value the client chose (a path, an id).
LOGGED_VALUE_CHARS_MAX: Final = 200
# The status recorded for a request that ended before its response began (an error that
# the outermost handler answers with a 500, or a dropped connection).
STATUS_UNANSWERED: Final = 500
_SEEN_KEY: Final = "kelpie.seen"

request_log = logging.getLogger(REQUEST_LOGGER)
log = logging.getLogger(__name__)


@final
class _Seen:
    """What the middlewares learn of one request as it goes through."""

    __slots__ = ("path_params", "route", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.route: str | None = None
        self.path_params: dict[str, Any] | None = None


@final
class RequestObserver:
    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, clock: Clock, tracing: Tracing | None = None
    ) -> None:
        self._app = app
        self._metrics = metrics
        self._clock = clock
        self._tracing = tracing or Tracing()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started_s = self._clock.monotonic_s()
        seen = _Seen()

        async def send_seen(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen.status = message["status"]
            await send(message)

        tracing = self._tracing
        if not tracing.enabled or scope["path"] == METRICS_PATH:
            try:
                await self._app({**scope, _SEEN_KEY: seen}, receive, send_seen)
            finally:
                self._observe(scope, seen, self._clock.monotonic_s() - started_s)
            return
        # The request's span is the root of everything it runs (its turn, steps, calls).
        with tracing.request(scope["method"], _headers(scope)) as span:
            try:
                await self._app({**scope, _SEEN_KEY: seen}, receive, send_seen)
            finally:
                self._observe(scope, seen, self._clock.monotonic_s() - started_s)
                status = STATUS_UNANSWERED if seen.status is None else seen.status
                route = seen.route or UNROUTED
                tracing.routed(span, scope["method"], route, status, seen.path_params)

    def _observe(self, scope: Scope, seen: _Seen, elapsed_s: float) -> None:
        route = seen.route or UNROUTED
        if route == METRICS_PATH:
            return
        status = STATUS_UNANSWERED if seen.status is None else seen.status
        method: str = scope["method"]
        self._metrics.record_request(method, route, status, elapsed_s)
        if request_log.isEnabledFor(logging.INFO):
            _log_request(method, route, status, elapsed_s, scope["path"], seen.path_params)


@final
class RouteTagger:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._app(scope, receive, send)
        finally:
            seen = scope.get(_SEEN_KEY)
            if isinstance(seen, _Seen):
                # Routing wrote these into this very scope (it updates the one it is given).
                route = scope.get("route")
                if isinstance(route, Route | Mount):
                    seen.route = route.path_format
                seen.path_params = scope.get("path_params")


def _headers(scope: Scope) -> dict[str, str]:
    """A request's headers for trace context propagation (`traceparent`, `tracestate`)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def _printable(value: str) -> str:
    """A client's value as a log line may quote it: cut short, and with control characters
    escaped (a newline in a path must not start a forged line)."""
    value = value[:LOGGED_VALUE_CHARS_MAX]
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def _log_request(
    method: str,
    route: str,
    status: int,
    elapsed_s: float,
    path: str,
    path_params: dict[str, Any] | None,
) -> None:
    duration_ms = round(elapsed_s * 1000, 1)
    method = _printable(method)
    fields: dict[str, object] = {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
    }
    shown = route
    if route == UNROUTED:
        shown = fields["path"] = _printable(path)
    ids = ""
    for name in LOGGED_PATH_PARAMS:
        value = (path_params or {}).get(name)
        if value is not None:
            fields[name] = _printable(str(value))
            ids += f" {name}={fields[name]}"
    request_log.info("%s %s %d %.1f ms%s", method, shown, status, duration_ms, ids, extra=fields)


def install_observability(app: FastAPI, env: Env, services: Services) -> None:
    """Adds the request log and metrics around everything installed so far (call it last),
    and `/metrics` unless metrics are off."""
    metrics = env.metrics
    # Innermost of the app's own middleware, so it sees the scope routing fills in.
    app.user_middleware.append(Middleware(RouteTagger))
    app.add_middleware(RequestObserver, metrics=metrics, clock=env.clock, tracing=env.tracing)
    if not metrics.enabled:
        return
    _watch(metrics, env, services)

    async def scrape() -> Response:
        try:
            for kind, rows in (await services.memory.queue_rows()).items():
                metrics.set_embedding_queue(kind, rows)
        except KelpieError as error:
            log.warning("metrics: embedding queue not counted: %s", error.detail)
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    app.add_api_route(METRICS_PATH, scrape, methods=["GET"], include_in_schema=False)


def _watch(metrics: Metrics, env: Env, services: Services) -> None:
    """The metrics read from live objects at scrape time."""
    runtime = services.runtime
    metrics.watch_activations(
        active=lambda: runtime.active_count,
        activated=lambda: runtime.activations_total,
        deactivated=lambda: runtime.deactivations_total,
    )
    # The production tiers only: the simulator's fakes keep no pool and no connections.
    sandbox, mcp = env.sandbox, env.mcp
    if isinstance(sandbox, ProcessSandbox):
        metrics.watch_sandbox_pool(lambda: sandbox.warm_workers)
    if isinstance(mcp, McpConnections):
        metrics.watch_mcp_connections(lambda: mcp.connected_count)

"""The server's metrics: every definition, and the one way each is recorded.

Two kinds. What code records as it happens: requests (at the API edge), turns and steps,
LLM calls, tool calls and step commits; each costs a label lookup and an add on the path
that records it. And what is read from live objects only when `/metrics` is scraped:
activations, the sandbox's warm workers, MCP connections and the embedding queue, which
cost nothing until then.

This module never reads a clock: callers pass durations they measured on their Env clock
(virtual time under the simulator), so recording is observation and never an effect.

Label values that clients or agents choose (an agent's model and provider, an HTTP method)
are capped at `LABEL_VALUES_MAX` distinct values a label and `LABEL_VALUE_CHARS_MAX`
characters; the rest count under `other`, so no client can grow the series without bound.
"""

from collections.abc import Callable, Iterable
from typing import Final, final

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# The text format the client library's own exporters serve (what every scraper reads).
METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
LABEL_VALUES_MAX: Final = 64
LABEL_VALUE_CHARS_MAX: Final = 128
OTHER: Final = "other"
# A request answered before it reached a route (a 404, a guard's 401 or 413).
UNROUTED: Final = "unrouted"
HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TURN_BUCKETS_S: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
LLM_BUCKETS_S: Final = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
TOOL_BUCKETS_S: Final = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120)
COMMIT_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1,
)

# The `_created` series double the exposition and say nothing a scraper needs. This is
# the client library's process-wide switch; Kelpie is its only user in the process.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in the library

Read = Callable[[], int]


@final
class _BoundedLabel:
    """Passes the first `LABEL_VALUES_MAX` distinct values through; later ones are OTHER."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= LABEL_VALUES_MAX or len(value) > LABEL_VALUE_CHARS_MAX:
            return OTHER
        self._seen.add(value)
        return value


@final
class _Watched(Collector):
    """The metrics read from live objects at scrape time, by the readers watching them."""

    # name -> (kind, help); a counter's name gets `_total` in the exposition.
    DEFINITIONS: Final = {
        "kelpie_agents_active": ("gauge", "Agents activated now (held in memory)."),
        "kelpie_agent_activations": ("counter", "Agents activated since the server started."),
        "kelpie_agent_deactivations": (
            "counter",
            "Activations put away (idle or over the cap) since the server started.",
        ),
        "kelpie_sandbox_warm_workers": ("gauge", "Sandbox workers started and waiting."),
        "kelpie_mcp_connections": ("gauge", "MCP servers with a live connection."),
    }

    def __init__(self) -> None:
        self.reads: dict[str, Read] = {}

    def collect(self) -> Iterable[Metric]:
        for name, (kind, documentation) in self.DEFINITIONS.items():
            read = self.reads.get(name)
            if read is None:
                continue
            if kind == "counter":
                yield CounterMetricFamily(name, documentation, value=read())
            else:
                yield GaugeMetricFamily(name, documentation, value=read())


@final
class Metrics:
    """One server's metrics in a registry of their own (never the library's global one), so
    several servers in one process never share series. With `enabled` false, recording
    does nothing and the server serves no `/metrics`."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = registry = CollectorRegistry()
        self._requests = Counter(
            "kelpie_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self._request_seconds = Histogram(
            "kelpie_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response (a stream's end).",
            ["method", "route"],
            registry=registry,
            buckets=HTTP_BUCKETS_S,
        )
        self._turns = Counter(
            "kelpie_turns",
            "Agent turns finished, by stop reason.",
            ["stop_reason"],
            registry=registry,
        )
        self._turn_seconds = Histogram(
            "kelpie_turn_duration_seconds",
            "Time an agent turn took, from its first step to its final commit.",
            registry=registry,
            buckets=TURN_BUCKETS_S,
        )
        self._steps = Counter("kelpie_steps", "Agent steps of finished turns.", registry=registry)
        self._llm_calls = Counter(
            "kelpie_llm_calls",
            "Model calls (retries included in one call), by provider, model and status: `ok`,"
            " `cancelled` or the error type.",
            ["provider", "model", "status"],
            registry=registry,
        )
        self._llm_seconds = Histogram(
            "kelpie_llm_call_duration_seconds",
            "Time a model call took, retries included.",
            ["provider", "model"],
            registry=registry,
            buckets=LLM_BUCKETS_S,
        )
        self._llm_tokens = Counter(
            "kelpie_llm_tokens",
            "Tokens of answered model calls, by kind: prompt or completion.",
            ["provider", "model", "kind"],
            registry=registry,
        )
        self._tool_calls = Counter(
            "kelpie_tool_calls",
            "Tool calls, by tool type and status (ok or error).",
            ["tool_type", "status"],
            registry=registry,
        )
        self._tool_seconds = Histogram(
            "kelpie_tool_call_duration_seconds",
            "Time a tool call took.",
            ["tool_type"],
            registry=registry,
            buckets=TOOL_BUCKETS_S,
        )
        self._code_runs = Counter(
            "kelpie_code_runs",
            "Executions of agents' code, by tier (session, interpreter or process).",
            ["tier"],
            registry=registry,
        )
        self._commit_seconds = Histogram(
            "kelpie_store_step_commit_duration_seconds",
            "Time the store took to commit one agent step (one transaction).",
            registry=registry,
            buckets=COMMIT_BUCKETS_S,
        )
        self._embedding_queue = Gauge(
            "kelpie_embedding_queue_rows",
            "Rows waiting for a vector (counted up to a cap when scraped), by kind.",
            ["kind"],
            registry=registry,
        )
        self._watched = _Watched()
        registry.register(self._watched)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._providers = _BoundedLabel()
        self._models = _BoundedLabel()

    # Recorded as it happens ------------------------------------------------------------

    def record_request(self, method: str, route: str, status: int, duration_s: float) -> None:
        if not self.enabled:
            return
        key = (method if method in HTTP_METHODS else OTHER, route, status)
        children = self._request_children.get(key)
        if children is None:
            # Every label is bounded (methods above, routes by the route table, statuses).
            children = (self._requests.labels(*key), self._request_seconds.labels(*key[:2]))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(duration_s)

    def record_turn(self, stop_reason: str, steps: int, duration_s: float) -> None:
        assert steps >= 0, "a turn with negative steps"
        if not self.enabled:
            return
        self._turns.labels(stop_reason).inc()
        self._turn_seconds.observe(duration_s)
        self._steps.inc(steps)

    def record_llm_call(
        self,
        provider: str,
        model: str,
        status: str,
        duration_s: float,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        if not self.enabled:
            return
        provider, model = self._providers(provider), self._models(model)
        self._llm_calls.labels(provider, model, status).inc()
        self._llm_seconds.labels(provider, model).observe(duration_s)
        if prompt_tokens:
            self._llm_tokens.labels(provider, model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self._llm_tokens.labels(provider, model, "completion").inc(completion_tokens)

    def record_tool_call(self, tool_type: str, ok: bool, duration_s: float) -> None:
        if not self.enabled:
            return
        self._tool_calls.labels(tool_type, "ok" if ok else "error").inc()
        self._tool_seconds.labels(tool_type).observe(duration_s)

    def record_code_run(self, tier: str) -> None:
        if self.enabled:
            self._code_runs.labels(tier).inc()

    def record_step_commit(self, duration_s: float) -> None:
        if self.enabled:
            self._commit_seconds.observe(duration_s)

    def set_embedding_queue(self, kind: str, rows: int) -> None:
        if self.enabled:
            self._embedding_queue.labels(kind).set(rows)

    # Read when scraped -------------------------------------------------------------------

    def watch_activations(self, *, active: Read, activated: Read, deactivated: Read) -> None:
        """Reads the runtime's activation table; a second call replaces the readers."""
        self._watched.reads["kelpie_agents_active"] = active
        self._watched.reads["kelpie_agent_activations"] = activated
        self._watched.reads["kelpie_agent_deactivations"] = deactivated

    def watch_sandbox_pool(self, warm: Read) -> None:
        self._watched.reads["kelpie_sandbox_warm_workers"] = warm

    def watch_mcp_connections(self, connected: Read) -> None:
        self._watched.reads["kelpie_mcp_connections"] = connected

    def render(self) -> bytes:
        """The exposition in Prometheus's text format (`METRICS_CONTENT_TYPE`)."""
        return generate_latest(self.registry)

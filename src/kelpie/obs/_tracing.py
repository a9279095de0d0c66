"""Traces (OpenTelemetry): a span for each HTTP request, turn, step, model call, tool call and
store commit, nested as a tree through the current context, each with the agent and run ids
of the turn it belongs to.

Every layer calls one small API, `Tracing.span(...)`, used as a `with` block. Tracing is
off by default, and then `span` hands back one shared do-nothing object: no span, no
context change, no allocation, so the cost is a method call and an `if`. Turned on, spans
go to an OpenTelemetry `TracerProvider`: in production the SDK's, exporting over OTLP/HTTP
from a batch thread (`Tracing.otlp`, the `kelpie[otel]` extra); in tests one with an
in-memory exporter. The SDK is imported only there, so the simulator (which forbids
threads) never loads it.

The OpenTelemetry API is a plain dependency (FastAPI, the MCP SDK and Anthropic's SDK
need it too), so this module imports it unconditionally.

Like the metrics, a span never reads Kelpie's clock and never changes what the server
does; the SDK stamps spans with the system's own time.
"""

import contextvars
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from types import MappingProxyType, TracebackType
from typing import Final, Literal, Protocol, final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

Attributes = Mapping[str, AttributeValue]
SpanKind = Literal["internal", "server", "client"]

INSTRUMENTATION_NAME: Final = "kelpie"
SERVICE_NAME_DEFAULT: Final = "kelpie"

# Span names (the model and tool spans follow OpenTelemetry's GenAI conventions).
SPAN_TURN: Final = "kelpie.turn"
SPAN_STEP: Final = "kelpie.step"
SPAN_COMMIT: Final = "kelpie.store.commit"
LLM_OPERATION: Final = "chat"
TOOL_OPERATION: Final = "execute_tool"


@final
class TraceAttr:
    """Attribute names: OpenTelemetry's semantic conventions where they have one."""

    # Every span of a turn carries these (handed down from the turn's span).
    AGENT_ID: Final = "kelpie.agent.id"
    RUN_ID: Final = "kelpie.run.id"
    AGENT_TYPE: Final = "kelpie.agent.type"
    STEP_ID: Final = "kelpie.step.id"
    STOP_REASON: Final = "kelpie.stop_reason"
    STEPS: Final = "kelpie.steps"
    COMMIT_FINAL: Final = "kelpie.commit.final"
    COMMIT_MESSAGES: Final = "kelpie.commit.messages"
    HTTP_METHOD: Final = "http.request.method"
    HTTP_ROUTE: Final = "http.route"
    HTTP_STATUS: Final = "http.response.status_code"
    GENAI_OPERATION: Final = "gen_ai.operation.name"
    GENAI_PROVIDER: Final = "gen_ai.provider.name"
    GENAI_MODEL: Final = "gen_ai.request.model"
    GENAI_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
    GENAI_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
    GENAI_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
    GENAI_TOOL_NAME: Final = "gen_ai.tool.name"
    GENAI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
    TOOL_TYPE: Final = "kelpie.tool.type"
    TOOL_OK: Final = "kelpie.tool.ok"
    ERROR_TYPE: Final = "error.type"


_KINDS: Final = {
    "internal": trace.SpanKind.INTERNAL,
    "server": trace.SpanKind.SERVER,
    "client": trace.SpanKind.CLIENT,
}
# Attributes a span hands down to every span opened inside it (the agent and run ids):
# the model and tool layers below the turn do not know them.
_NOTHING_INHERITED: Final[Attributes] = MappingProxyType({})
_INHERITED: contextvars.ContextVar[Attributes] = contextvars.ContextVar(
    "kelpie_trace_inherited", default=_NOTHING_INHERITED
)


class TraceSpan(Protocol):
    """What code inside a `with tracing.span(...)` block may do to its span."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def update_name(self, name: str) -> None: ...

    def fail(self, error_type: str) -> None:
        """Marks the span failed, as `error_type`: a failure without an exception (a tool's
        error return, a 5xx), or one an exception would name less well."""
        ...


@final
class _Off:
    """The span of tracing that is off: one shared instance, every method does nothing."""

    __slots__ = ()

    def __enter__(self) -> "_Off":
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def update_name(self, name: str) -> None:
        return None

    def fail(self, error_type: str) -> None:
        return None


_OFF: Final = _Off()


@final
class _Live:
    """One recording span, current (in the OpenTelemetry context) for its `with` block."""

    __slots__ = ("_attributes", "_failed", "_inherit", "_inherited", "_kind", "_name", "_parent",
                 "_span", "_token", "_tracer")  # fmt: skip

    def __init__(
        self,
        tracer: trace.Tracer,
        name: str,
        attributes: Attributes | None,
        kind: SpanKind,
        inherit: Attributes | None,
        parent: otel_context.Context | None,
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes = attributes
        self._kind = kind
        self._inherit = inherit
        self._parent = parent
        self._span: trace.Span = trace.INVALID_SPAN
        self._token: contextvars.Token[otel_context.Context] | None = None
        self._inherited: contextvars.Token[Attributes] | None = None
        self._failed = False

    def __enter__(self) -> "_Live":
        inherited = _INHERITED.get()
        if self._inherit:
            inherited = {**inherited, **self._inherit}
            self._inherited = _INHERITED.set(inherited)
        attributes = {**inherited, **(self._attributes or {})}
        self._span = span = self._tracer.start_span(
            self._name, context=self._parent, kind=_KINDS[self._kind], attributes=attributes
        )
        self._token = otel_context.attach(trace.set_span_in_context(span, self._parent))
        return self

    def __exit__(
        self,
        error_kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            if error is not None:
                if isinstance(error, Exception):
                    span.record_exception(error)
                if not self._failed:  # else the caller named the failure already
                    name = type(error).__qualname__
                    span.set_attribute(TraceAttr.ERROR_TYPE, name)
                    # Cancelled (or the process stopping): no message worth keeping.
                    detail = f"{name}: {error}" if isinstance(error, Exception) else name
                    span.set_status(trace.StatusCode.ERROR, detail)
            span.end()
        finally:
            if self._token is not None:
                otel_context.detach(self._token)
            if self._inherited is not None:
                try:
                    _INHERITED.reset(self._inherited)
                except ValueError:  # closed in another context than it opened in
                    pass

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        self._span.set_attribute(key, value)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)

    def fail(self, error_type: str) -> None:
        self._failed = True
        self._span.set_attribute(TraceAttr.ERROR_TYPE, error_type)
        self._span.set_status(trace.StatusCode.ERROR, error_type)


@final
class Tracing:
    """One server's tracing. Without a provider (the default) it is off and `span` costs
    next to nothing; with one, every `span` records into it."""

    def __init__(
        self,
        provider: trace.TracerProvider | None = None,
        *,
        close: Callable[[], object] | None = None,
    ) -> None:
        self.enabled = provider is not None
        self._tracer = None if provider is None else provider.get_tracer(INSTRUMENTATION_NAME)
        self._close = close

    @classmethod
    def otlp(cls, *, service_version: str, set_global: bool = True) -> "Tracing":
        """Tracing that exports over OTLP/HTTP, configured by OpenTelemetry's standard
        variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._HEADERS`, `OTEL_SERVICE_NAME`,
        `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, ...). The provider is also made
        the process's global one, so the model and MCP SDKs' own spans nest under Kelpie's.

        Raises `ImportError` with what to install when the `otel` extra is missing."""
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as error:
            raise ImportError(
                "tracing is on (KELPIE_OTEL or OTEL_EXPORTER_OTLP_ENDPOINT) but the"
                " OpenTelemetry SDK or its OTLP exporter is not installed: install"
                f" `kelpie[otel]` (pip install 'kelpie[otel]'), or set KELPIE_OTEL=0 ({error})"
            ) from error
        resource = Resource.create({SERVICE_VERSION: service_version})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: SERVICE_NAME_DEFAULT}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if set_global:
            trace.set_tracer_provider(provider)
        return cls(provider, close=provider.shutdown)

    def span(
        self,
        name: str,
        attributes: Attributes | None = None,
        *,
        kind: SpanKind = "internal",
        inherit: Attributes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[TraceSpan]:
        """A span for a `with` block, child of the current one. `inherit`: attributes this
        span and every span opened inside it carry (the agent and run ids). `headers`: a
        request's headers, whose `traceparent` (W3C trace context) makes the span a child
        of the caller's span."""
        if self._tracer is None:
            return _OFF
        parent = None
        if headers is not None:
            from opentelemetry import propagate  # loads the propagators: when on only

            parent = propagate.extract(headers)
        return _Live(self._tracer, name, attributes, kind, inherit, parent)

    def annotate(self, key: str, value: AttributeValue) -> None:
        """Sets an attribute of the current span (one whose object the caller cannot reach,
        such as a step's id, made after its span opened)."""
        if self._tracer is not None:
            trace.get_current_span().set_attribute(key, value)

    def close(self) -> None:
        """Exports what is still queued and stops the exporter (at the server's exit)."""
        if self._close is not None:
            self._close()

    # The spans Kelpie opens, one method each, so their names and attributes live here.

    def request(self, method: str, headers: Mapping[str, str]) -> AbstractContextManager[TraceSpan]:
        """An HTTP request, continuing the caller's trace; name it with `http_route` once
        routing has found the route."""
        if self._tracer is None:
            return _OFF
        attributes = {TraceAttr.HTTP_METHOD: method}
        return self.span(method, attributes, kind="server", headers=headers)

    def turn(
        self, agent_id: str, run_id: str, agent_type: str
    ) -> AbstractContextManager[TraceSpan]:
        if self._tracer is None:
            return _OFF
        ids = {TraceAttr.AGENT_ID: agent_id, TraceAttr.RUN_ID: run_id}
        return self.span(SPAN_TURN, {TraceAttr.AGENT_TYPE: agent_type}, inherit=ids)

    def step(self) -> AbstractContextManager[TraceSpan]:
        """One step; its id is made inside it, and set with `annotate(TraceAttr.STEP_ID)`."""
        if self._tracer is None:
            return _OFF
        return self.span(SPAN_STEP)

    def llm_call(self, provider: str, model: str) -> AbstractContextManager[TraceSpan]:
        if self._tracer is None:
            return _OFF
        attributes = {
            TraceAttr.GENAI_OPERATION: LLM_OPERATION,
            TraceAttr.GENAI_PROVIDER: provider,
            TraceAttr.GENAI_MODEL: model,
        }
        return self.span(f"{LLM_OPERATION} {model}", attributes, kind="client")

    def tool_call(
        self, tool_name: str, tool_type: str, call_id: str
    ) -> AbstractContextManager[TraceSpan]:
        if self._tracer is None:
            return _OFF
        attributes = {
            TraceAttr.GENAI_OPERATION: TOOL_OPERATION,
            TraceAttr.GENAI_TOOL_NAME: tool_name,
            TraceAttr.GENAI_TOOL_CALL_ID: call_id,
            TraceAttr.TOOL_TYPE: tool_type,
        }
        return self.span(f"{TOOL_OPERATION} {tool_name}", attributes)

    def commit(self, *, final: bool, messages: int) -> AbstractContextManager[TraceSpan]:
        """One store transaction of a turn: a step's, or the run's final one."""
        if self._tracer is None:
            return _OFF
        attributes = {TraceAttr.COMMIT_FINAL: final, TraceAttr.COMMIT_MESSAGES: messages}
        return self.span(SPAN_COMMIT, attributes)

    def routed(
        self,
        span: TraceSpan,
        method: str,
        route: str,
        status: int,
        ids: Mapping[str, object] | None = None,
    ) -> None:
        """Names a request's span by its route template (`POST /v1/agents/{agent_id}/messages`)
        and records its status and the `agent_id` / `run_id` of its path; a 5xx marks it
        failed (a 4xx is the client's doing, not the server's)."""
        if self._tracer is None:
            return
        span.update_name(f"{method} {route}")
        span.set_attribute(TraceAttr.HTTP_ROUTE, route)
        span.set_attribute(TraceAttr.HTTP_STATUS, status)
        for param, key in (("agent_id", TraceAttr.AGENT_ID), ("run_id", TraceAttr.RUN_ID)):
            if ids and (value := ids.get(param)) is not None:
                span.set_attribute(key, str(value))
        if status >= 500:
            span.fail(str(status))

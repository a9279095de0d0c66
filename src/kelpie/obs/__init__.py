"""Observability: the metrics a server exports at `/metrics` in Prometheus's text format
(`Metrics`, one registry per server) and the format of its log lines (text, or JSON
lines), and traces (OpenTelemetry spans of requests, turns, steps, model and tool calls and
store commits: `Tracing`, off unless configured). Every layer records into it, so it sits
below them all and imports nothing else of Kelpie.
"""

from kelpie.obs._logs import LOG_FORMATS, JsonFormatter, LogFormat, configure_logging
from kelpie.obs._metrics import (
    HTTP_METHODS,
    LABEL_VALUE_CHARS_MAX,
    LABEL_VALUES_MAX,
    METRICS_CONTENT_TYPE,
    OTHER,
    UNROUTED,
    Metrics,
)
from kelpie.obs._tracing import TraceAttr, TraceSpan, Tracing

__all__ = [
    "HTTP_METHODS",
    "LABEL_VALUES_MAX",
    "LABEL_VALUE_CHARS_MAX",
    "LOG_FORMATS",
    "METRICS_CONTENT_TYPE",
    "OTHER",
    "UNROUTED",
    "JsonFormatter",
    "LogFormat",
    "Metrics",
    "TraceAttr",
    "TraceSpan",
    "Tracing",
    "configure_logging",
]

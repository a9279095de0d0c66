"""Observability: the metrics a server exports at `/metrics` in Prometheus's text format
(`Metrics`, one registry per server) and the format of its log lines (text, or JSON
lines). Every layer records into it, so it sits below them all and imports nothing else
of Kelpie. Tracing (OpenTelemetry) is not built yet.
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
    "configure_logging",
]

"""How the server's log lines look: text for people (`LEVEL logger: message`), or one JSON
object a line for log collectors (`KELPIE_LOG_FORMAT=json`), with a record's extra fields
(a request line's method, route, status, ...) as keys of their own.

Nothing here decides what is logged; callers keep secrets out of what they log (the
request log never has headers, bodies or query strings)."""

import datetime
import json
import logging
import sys
from typing import Final, Literal, get_args

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[str, ...]] = get_args(LogFormat)
TEXT_FORMAT: Final = "%(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has: the rest are a caller's `extra` fields. (uvicorn adds
# `color_message`, its message with terminal colour codes.)
_RECORD_ATTRIBUTES: Final = frozenset(
    {*vars(logging.makeLogRecord({})), "message", "asctime", "taskName", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the record's
    extra fields, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        entry: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Sends every logger's records (uvicorn's too, when it is not configuring its own) to
    stderr in `log_format`, at `level` and above."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())

"""Log lines as JSON (`KELPIE_LOG_FORMAT=json`): one object a line with the standard keys,
a record's extra fields, and an exception's traceback."""

from __future__ import annotations

import json
import logging
import sys

from kelpie.obs import JsonFormatter


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "kelpie.http", "levelno": logging.INFO, "levelname": "INFO", "msg": message}
    )
    made.args = args
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_json_line_has_the_standard_keys_and_the_extra_fields() -> None:
    line = JsonFormatter().format(record("GET %s %d", "/v1/health", 200, status=200, route="/x"))

    entry = json.loads(line)

    assert "\n" not in line
    assert entry["level"] == "INFO"
    assert entry["logger"] == "kelpie.http"
    assert entry["message"] == "GET /v1/health 200"
    assert entry["status"] == 200
    assert entry["route"] == "/x"
    assert entry["time"].endswith("+00:00")
    assert not {"args", "msg", "levelno", "pathname", "color_message"} & set(entry)


def test_json_line_escapes_control_characters() -> None:
    line = JsonFormatter().format(record("path %s", "/a\nINFO forged"))

    assert "\n" not in line
    assert json.loads(line)["message"] == "path /a\nINFO forged"


def test_json_line_carries_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()

    entry = json.loads(JsonFormatter().format(failed))

    assert "ValueError: boom" in entry["exception"]

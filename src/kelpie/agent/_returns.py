"""Tool results as Letta packages them for the model and stores them:
`{"status": "OK"|"Failed", "message": <return>, "time": <local time>}`, truncated at the
tool's `return_char_limit`."""

import datetime as dt
import json
from typing import Final

from kelpie.agent._prompt import format_letta_time

ERROR_TEXT_CHARS_MAX: Final = 1000


def truncate_return(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = (
        "... [NOTE: function output was truncated since it exceeded the character limit:"
        f" {len(text)} > {limit}]"
    )
    return text[:limit] + note


def package_return(returned: str | None, *, ok: bool, now: dt.datetime, timezone: str) -> str:
    return json.dumps(
        {
            "status": "OK" if ok else "Failed",
            "message": "None" if returned is None else returned,
            "time": format_letta_time(now, timezone or "UTC"),
        },
        ensure_ascii=False,
    )


def exception_text(tool_name: str, error: BaseException) -> str:
    """Letta's error return for a tool that raised, cut to ERROR_TEXT_CHARS_MAX."""
    text = f"Error executing function {tool_name}: {type(error).__name__}: {error}"
    return text[:ERROR_TEXT_CHARS_MAX]

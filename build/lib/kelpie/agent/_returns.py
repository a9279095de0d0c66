"""Tool results as Letta packages them for the model and stores them:
`{"status": "OK"|"Failed", "message": <return>, "time": <local time>}`, truncated at the
tool's `return_char_limit`."""

import datetime as dt
import json

from kelpie.agent._prompt import format_letta_time


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

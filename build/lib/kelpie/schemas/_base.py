"""Base classes for the Letta-shaped models: requests ignore unknown fields (letta-code
sends extras), responses are plain data."""

import datetime as dt
import re
from collections.abc import Sequence
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# C0 and C1 control characters and DEL (Unicode category Cc).
_CONTROL_CHARACTER: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
IDENTIFIER_PATTERN: Final = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _without_control_characters(value: str) -> str:
    if (found := _CONTROL_CHARACTER.search(value)) is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(found.group()):04X})")
    return value


# A name, label or tag: shown in lists, matched exactly, and projected as file-like paths,
# so control characters (NUL, newlines, escapes) are refused.
Identifier = Annotated[
    str,
    AfterValidator(_without_control_characters),
    Field(json_schema_extra={"pattern": IDENTIFIER_PATTERN}),
]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)


def datetime_from_us(us: int) -> dt.datetime:
    """Exact (no float rounding), so a stored time reads back equal."""
    return _EPOCH + dt.timedelta(microseconds=us)


def us_from_datetime(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - _EPOCH) // _ONE_US


def _location(loc: Sequence[Any]) -> str:
    parts = [str(part) for part in loc if part not in ("body",)] or ["body"]
    return ".".join(parts)


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """One sentence per problem: `where: what` (e.g. `tags: Input should be a valid list`)."""
    messages = []
    for error in errors:
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "int_parsing_size":
            message = "Input should be an integer that fits in 64 bits"
        if error.get("type") == "json_invalid":
            message = f"Request body is not valid JSON: {error.get('ctx', {}).get('error', '')}"
        messages.append(f"{_location(error.get('loc', ()))}: {message}")
    return "; ".join(messages)

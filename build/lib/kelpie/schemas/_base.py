"""Base classes for the Letta-shaped models: requests ignore unknown fields (letta-code
sends extras), responses are plain data."""

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


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
        if error.get("type") == "json_invalid":
            message = f"Request body is not valid JSON: {error.get('ctx', {}).get('error', '')}"
        messages.append(f"{_location(error.get('loc', ()))}: {message}")
    return "; ".join(messages)

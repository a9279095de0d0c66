"""Base classes for the Letta-shaped models: requests ignore unknown fields (letta-code
sends extras), responses are plain data."""

import datetime as dt

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

"""Working memory (a Kelpie extension): per-agent key/value scratch state with an optional
time to live. The limits and the checks on keys, values and TTLs live here so the REST
models and the agent tools enforce exactly the same rules."""

import datetime as dt
import json
import re
from typing import Final

from pydantic import Field, JsonValue, field_validator

from kelpie.schemas._base import RequestModel, ResponseModel, datetime_from_us

WORKING_MEMORY_KEY_CHARS_MAX: Final = 200
# Of the value's compact JSON text, UTF-8 encoded.
WORKING_MEMORY_VALUE_BYTES_MAX: Final = 64 * 1024
# Live keys per agent. Checked in the write's transaction for REST writes; a tool checks
# when it runs, so a REST write landing during that step can push one step's keys over.
WORKING_MEMORY_KEYS_MAX: Final = 1_000
WORKING_MEMORY_TTL_S_MAX: Final = 30 * 24 * 3600
# Keys are URL path segments and tool arguments: a small ASCII set needs no escaping and
# cannot hide control characters. `.`, `:`, `-` and `_` make namespaces for prefix lists.
WORKING_MEMORY_KEY_PATTERN: Final = r"[A-Za-z0-9_.:-]+"
_KEY_RE: Final = re.compile(WORKING_MEMORY_KEY_PATTERN)
_US_PER_S: Final = 1_000_000
_KEY_RULE: Final = f"1 to {WORKING_MEMORY_KEY_CHARS_MAX} characters from A-Z, a-z, 0-9 and _ . : -"


def working_memory_key_error(key: object, *, what: str = "key") -> str | None:
    """Why `key` is not a valid key (or, with `what="prefix"`, an empty-able prefix)."""
    if not isinstance(key, str):
        return f"{what} must be a string, not {type(key).__name__}"
    if what == "prefix" and key == "":
        return None
    if len(key) > WORKING_MEMORY_KEY_CHARS_MAX or _KEY_RE.fullmatch(key) is None:
        return f"{what} must be {_KEY_RULE}, got {key[:WORKING_MEMORY_KEY_CHARS_MAX]!r}"
    return None


def working_memory_value_json(value: object) -> str:
    """The value's compact JSON text, as stored; raises ValueError when the value cannot be
    stored (null, not JSON, not finite, or over WORKING_MEMORY_VALUE_BYTES_MAX)."""
    if value is None:
        raise ValueError("value must not be null; delete the key to remove it")
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise ValueError(f"value is not storable JSON: {error}") from error
    size = len(text.encode())
    if size > WORKING_MEMORY_VALUE_BYTES_MAX:
        raise ValueError(
            f"value is {size} bytes of JSON; the limit is {WORKING_MEMORY_VALUE_BYTES_MAX}"
        )
    return text


def working_memory_ttl_error(ttl_s: object) -> str | None:
    if ttl_s is None:
        return None
    if not isinstance(ttl_s, int) or isinstance(ttl_s, bool):
        return f"ttl_s must be a whole number of seconds, not {type(ttl_s).__name__}"
    if not 1 <= ttl_s <= WORKING_MEMORY_TTL_S_MAX:
        return f"ttl_s must be between 1 and {WORKING_MEMORY_TTL_S_MAX} seconds, got {ttl_s}"
    return None


class WorkingMemoryEntry(ResponseModel):
    """One key of an agent's working memory."""

    key: str = Field(description="The key, unique per agent.")
    value: JsonValue = Field(description="The stored JSON value (never null).")
    expires_at: dt.datetime | None = Field(
        default=None,
        description="When the key stops being visible; null if it never expires.",
    )
    created_at: dt.datetime = Field(description="When the key was first set.")
    updated_at: dt.datetime = Field(description="When the key was last set.")


class WorkingMemorySet(RequestModel):
    """Sets a key, replacing its value and TTL (a PUT without `ttl_s` clears any TTL)."""

    value: JsonValue = Field(
        description="Any JSON value except null, at most"
        f" {WORKING_MEMORY_VALUE_BYTES_MAX} bytes as compact JSON."
    )
    ttl_s: int | None = Field(
        default=None,
        ge=1,
        le=WORKING_MEMORY_TTL_S_MAX,
        description="Seconds until the key expires; omitted or null: never.",
    )

    @field_validator("value")
    @classmethod
    def _storable(cls, value: JsonValue) -> JsonValue:
        working_memory_value_json(value)
        return value


def working_memory_entry(
    key: str, value: JsonValue, *, ttl_s: int | None, now_us: int
) -> WorkingMemoryEntry:
    """A key set at `now_us` (the store keeps the created_at of a key it replaces)."""
    now = datetime_from_us(now_us)
    expires_at = None if ttl_s is None else datetime_from_us(now_us + ttl_s * _US_PER_S)
    return WorkingMemoryEntry(
        key=key, value=value, expires_at=expires_at, created_at=now, updated_at=now
    )

"""Strict JSON for request bodies: what Python's `json` accepts but no store can keep is
refused where the body is decoded, so no field can forget it. A lone surrogate (`"\\ud800"`)
is not Unicode (encoding it as UTF-8 fails, so storing it was a 500), and NaN or Infinity
are not JSON (they were stored as null); both are refused naming the field."""

import json
import math
import re
from collections.abc import Iterator
from typing import Any, Final

import orjson

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_WHAT_MAX_CHARS: Final = 200


class JsonRejected(ValueError):
    """Well-formed JSON carrying a value Kelpie refuses; `detail` names where (`a.0.b`)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _NonFinite:
    """What the diagnosis decodes `NaN`, `Infinity` and `-Infinity` to."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def decode_json(data: bytes | str) -> Any:
    """Decodes a request body. orjson refuses lone surrogates, NaN, Infinity and numbers
    beyond a double in C; only a refused body pays for Python's decoder, to say where.
    Raises `json.JSONDecodeError` for malformed JSON (its usual message), `JsonRejected`
    for well-formed JSON with a refused value. Integers beyond 64 bits arrive as floats."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise _diagnosis(data, str(error)) from None


def _diagnosis(data: bytes | str, refused: str) -> ValueError:
    try:
        # Bytes are decoded with `surrogatepass`, so an encoded surrogate is found too.
        value = json.loads(data, parse_constant=_NonFinite)
    except json.JSONDecodeError as error:
        return error
    except UnicodeDecodeError as error:
        return JsonRejected(f"body: Request body is not valid UTF-8: {error.reason}")
    except (ValueError, RecursionError):
        return JsonRejected(f"body: Request body is not valid JSON: {refused}")
    for where, what in _problems(value, ()):
        return JsonRejected(f"{'.'.join(where)[:_WHAT_MAX_CHARS] or 'body'}: {what}")
    return JsonRejected(f"body: Request body is not valid JSON: {refused}")


def _problems(value: object, where: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(value, str):
        if (found := _SURROGATE.search(value)) is not None:
            code = f"U+{ord(found.group()):04X}"
            yield where, f"String contains a lone surrogate ({code}), which is not valid Unicode"
    elif isinstance(value, _NonFinite):
        yield where, f"{value.literal} is not a valid JSON number"
    elif isinstance(value, float) and not math.isfinite(value):
        yield where, "Number is too large (beyond a 64-bit float)"
    elif isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key) is not None:
                shown = key.encode("utf-8", "backslashreplace").decode()[:_WHAT_MAX_CHARS]
                yield where, f"Key '{shown}' contains a lone surrogate, which is not valid Unicode"
            yield from _problems(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _problems(item, (*where, str(index)))

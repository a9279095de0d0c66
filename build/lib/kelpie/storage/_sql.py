"""Small SQL helpers shared by the SQLite modules."""

from collections.abc import Sequence
from typing import Final

SQL_VARIABLES_MAX: Final = 900  # below SQLite's 999 default, for IN (...) lists


def like_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with `%`, `_` and `\\` taken literally
    (use with ESCAPE '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def placeholders(values: Sequence[object]) -> str:
    assert 0 < len(values) <= SQL_VARIABLES_MAX, "IN list size out of range"
    return ",".join("?" * len(values))

"""Read-only checks of a SQLite database for `kelpie doctor`: which migrations it lacks
and what SQLite's quick integrity check finds. Nothing here writes."""

import contextlib
import sqlite3
from pathlib import Path

from kelpie.storage import _migrations
from kelpie.storage._errors import StorageUnavailable


def _read_only(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise StorageUnavailable(f"cannot open database {path}: {error}") from error


def pending_migrations(path: Path) -> list[str]:
    """The migrations the database at `path` lacks (applied by the server at start)."""
    with contextlib.closing(_read_only(path)) as db:
        try:
            rows = db.execute("SELECT migration_id FROM _yoyo_migration").fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise StorageUnavailable(f"cannot read database {path}: {error}") from error
            rows = []
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot read database {path}: {error}") from error
    applied = {row[0] for row in rows}
    return [m for m in _migrations.migration_ids() if m not in applied]


def integrity_problems(path: Path) -> list[str]:
    """What `PRAGMA quick_check` reports (empty: none)."""
    with contextlib.closing(_read_only(path)) as db:
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as error:
            raise StorageUnavailable(f"cannot check database {path}: {error}") from error
    problems = [str(row[0]) for row in rows]
    return [] if problems == ["ok"] else problems

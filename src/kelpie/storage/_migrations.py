"""Versioned schema migrations (yoyo), applied at start-up before the store opens.

Migrations are plain SQL files in `migrations/sqlite/`, named `NNNN_what.sql`, applied in
order, each once, each in its own transaction. Add a new file for every schema change; never
edit one that has shipped.
"""

import contextlib
import sqlite3
from importlib import resources
from pathlib import Path

from kelpie.storage._errors import StorageUnavailable


def migrations_dir() -> Path:
    return Path(str(resources.files("kelpie.storage") / "migrations" / "sqlite"))


def migration_ids() -> list[str]:
    """Every migration this version has, in order."""
    return sorted(path.stem for path in migrations_dir().glob("*.sql"))


def at_head(db_path: Path) -> bool:
    """True when every migration is recorded as applied: a restart then skips importing
    the migration tool (a tenth of a second of start-up)."""
    if not db_path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            rows = db.execute("SELECT migration_id FROM _yoyo_migration").fetchall()
    except sqlite3.Error:
        return False
    return {row[0] for row in rows} >= set(migration_ids())


def apply(db_path: Path) -> int:
    """Applies pending migrations to the SQLite database at `db_path`; returns how many."""
    if at_head(db_path):
        return 0
    import yoyo  # imported here: only a database behind the code needs it

    try:
        backend = yoyo.get_backend(f"sqlite:///{db_path}")
    except Exception as error:  # the driver's own errors, e.g. a path that is a directory
        raise StorageUnavailable(f"cannot open database {db_path}: {error}") from error
    try:
        migrations = yoyo.read_migrations(str(migrations_dir()))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return len(pending)
    except Exception as error:  # yoyo raises driver and its own errors alike
        raise StorageUnavailable(f"cannot migrate database {db_path}: {error}") from error
    finally:
        backend.connection.close()

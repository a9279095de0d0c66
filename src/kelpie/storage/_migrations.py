"""Versioned schema migrations (yoyo), applied at start-up before the store opens.

Migrations are plain SQL files in `migrations/sqlite/`, named `NNNN_what.sql`, applied in
order, each once, each in its own transaction. Add a new file for every schema change; never
edit one that has shipped.
"""

from importlib import resources
from pathlib import Path

from kelpie.storage._errors import StorageUnavailable


def migrations_dir() -> Path:
    return Path(str(resources.files("kelpie.storage") / "migrations" / "sqlite"))


def apply(db_path: Path) -> int:
    """Applies pending migrations to the SQLite database at `db_path`; returns how many."""
    import yoyo  # imported here: only start-up needs it

    backend = yoyo.get_backend(f"sqlite:///{db_path}")
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

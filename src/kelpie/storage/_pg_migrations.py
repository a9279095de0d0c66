"""Versioned schema migrations on PostgreSQL: the same tool (yoyo, through psycopg 3) and the
same version ids as on SQLite. Every `migrations/sqlite/NNNN_what.sql` has its translation
in `migrations/postgres/` under the same name (a test holds the two lists equal), so a
database of either kind is at "version NNNN" in one sense, which `migrate-db` relies on.
"""

import contextlib
from importlib import resources
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg

from kelpie.storage._errors import StorageUnavailable

# Generated STORED columns (the tsvector) need 12; 13 is the oldest release still patched
# when this tier was written.
PG_SERVER_VERSION_MIN: Final = 130000
_SCHEMES: Final = ("postgresql", "postgres")
CONNECT_TIMEOUT_S: Final = 10


def migrations_dir() -> Path:
    return Path(str(resources.files("kelpie.storage") / "migrations" / "postgres"))


def migration_ids() -> list[str]:
    """Every PostgreSQL migration this version has, in order."""
    return sorted(path.stem for path in migrations_dir().glob("*.sql"))


def is_postgres_dsn(dsn: str) -> bool:
    return urlsplit(dsn).scheme in _SCHEMES


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _yoyo_uri(dsn: str) -> str:
    parts = urlsplit(dsn)
    assert parts.scheme in _SCHEMES, "not a postgresql:// URL"
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


def _applied(connection: psycopg.Connection) -> set[str] | None:
    """Migration ids recorded as applied; None before yoyo has run here."""
    exists = connection.execute("SELECT to_regclass('_yoyo_migration') IS NOT NULL").fetchone()
    if exists is None or not exists[0]:
        return None
    rows = connection.execute("SELECT migration_id FROM _yoyo_migration").fetchall()
    return {row[0] for row in rows}


def check(dsn: str) -> bool:
    """Whether every migration is applied. Raises StorageUnavailable, with a message that
    says what to do, when the server cannot be reached, is too old, or holds migrations
    this version does not know (a newer Kelpie wrote it)."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
            version = db.info.server_version
            if version < PG_SERVER_VERSION_MIN:
                raise StorageUnavailable(
                    f"PostgreSQL {version // 10000} at {redacted(dsn)} is too old:"
                    f" Kelpie needs {PG_SERVER_VERSION_MIN // 10000} or newer"
                )
            applied = _applied(db)
    except psycopg.Error as error:
        raise StorageUnavailable(f"cannot reach database {redacted(dsn)}: {error}") from error
    if applied is None:
        return False
    unknown = sorted(applied - set(migration_ids()))
    if unknown:
        raise StorageUnavailable(
            f"database {redacted(dsn)} has schema migrations this Kelpie does not know"
            f" ({', '.join(unknown)}): it was written by a newer version"
        )
    return applied >= set(migration_ids())


def apply(dsn: str) -> int:
    """Applies pending migrations (under yoyo's lock, so servers starting together take
    turns); returns how many. A database at head costs one query and no yoyo import."""
    if check(dsn):
        return 0
    import yoyo  # imported here: only a database behind the code needs it

    try:
        backend = yoyo.get_backend(_yoyo_uri(dsn))
    except Exception as error:  # the driver's own errors
        raise StorageUnavailable(f"cannot open database {redacted(dsn)}: {error}") from error
    try:
        migrations = yoyo.read_migrations(str(migrations_dir()))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return len(pending)
    except Exception as error:  # yoyo raises driver and its own errors alike
        raise StorageUnavailable(f"cannot migrate database {redacted(dsn)}: {error}") from error
    finally:
        with contextlib.suppress(Exception):
            backend.connection.close()


def has_pgvector(dsn: str) -> bool:
    """Whether the migrated schema has pgvector columns (the extension existed, or could be
    created, when migration 0003 ran)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
        row = db.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
            " WHERE table_name = 'passage_index' AND column_name = 'embedding')"
        ).fetchone()
    return bool(row and row[0])


def iterative_scans(dsn: str) -> bool:
    """Whether pgvector has iterative index scans (0.8+): a filtered HNSW search then goes
    on past the neighbours the filter rejects; older versions may return fewer rows."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
        row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        return False
    parts = tuple(int(part) for part in str(row[0]).split(".")[:2] if part.isdigit())
    return parts >= (0, 8)

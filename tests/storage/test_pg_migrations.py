"""PostgreSQL schema migrations: each SQLite migration has its twin under the same id, the
two schemas have the same tables and indexes, migrating an empty database and again is
idempotent, an upgrade from the previous version carries the data, keyword search has its
tsvector and pgvector its column, and a database that is too new or unreachable is refused
with a clear message. Also: the test PostgreSQL runs as an unprivileged user."""

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Final

import psycopg
import pytest
import yoyo

from kelpie.storage import StorageUnavailable, _migrations, _pg_migrations
from kelpie.storage._pgserver import LocalPostgres

# SQLite-only tables: FTS5's own (PostgreSQL keeps a tsvector on the index row instead).
SQLITE_ONLY_TABLE_MARK: Final = "_fts"


def _sqlite_schema(path: Path) -> tuple[set[str], set[str]]:
    """(tables, indexes) of a SQLite database migrated to head."""
    _migrations.apply(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT type, name FROM sqlite_master").fetchall()
    tables = {
        name
        for kind, name in rows
        if kind == "table"
        and not name.startswith(("sqlite_", "_yoyo", "yoyo"))
        and SQLITE_ONLY_TABLE_MARK not in name
    }
    indexes = {name for kind, name in rows if kind == "index" and "autoindex" not in name}
    return tables, indexes


def _pg_schema(dsn: str) -> tuple[set[str], set[str]]:
    with psycopg.connect(dsn) as db:
        tables = db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT LIKE '%yoyo%'"
        ).fetchall()
        indexes = db.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            " AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'"
        ).fetchall()
    return {row[0] for row in tables}, {row[0] for row in indexes}


@pytest.fixture
def fresh_dsn(postgres: LocalPostgres, request: pytest.FixtureRequest) -> str:
    name = f"m_{os.getpid()}_{request.node.name}".replace("[", "_").replace("]", "")[:60]
    postgres.drop_database(name)
    return postgres.create_database(name)


def test_every_sqlite_migration_has_a_postgres_twin() -> None:
    assert _pg_migrations.migration_ids() == _migrations.migration_ids()


def test_migrate_an_empty_database_then_again(fresh_dsn: str, tmp_path: Path) -> None:
    assert _pg_migrations.check(fresh_dsn) is False
    assert _pg_migrations.apply(fresh_dsn) == len(_pg_migrations.migration_ids())
    assert _pg_migrations.apply(fresh_dsn) == 0
    assert _pg_migrations.check(fresh_dsn) is True
    sqlite_tables, sqlite_indexes = _sqlite_schema(tmp_path / "kelpie.db")
    pg_tables, pg_indexes = _pg_schema(fresh_dsn)
    assert pg_tables == sqlite_tables
    # Every SQLite index (each list path's) exists under its name; PostgreSQL adds the
    # GIN indexes of keyword search.
    assert sqlite_indexes <= pg_indexes
    assert pg_indexes - sqlite_indexes == {"passage_index_text", "message_index_text"}


def test_search_columns_use_tsvector_and_pgvector(fresh_dsn: str) -> None:
    _pg_migrations.apply(fresh_dsn)
    assert _pg_migrations.has_pgvector(fresh_dsn) is True
    with psycopg.connect(fresh_dsn) as db:
        columns = db.execute(
            "SELECT table_name, column_name, udt_name FROM information_schema.columns"
            " WHERE column_name IN ('tsv', 'embedding') ORDER BY 1, 2"
        ).fetchall()
        assert columns == [
            ("message_index", "embedding", "halfvec"),
            ("message_index", "tsv", "tsvector"),
            ("passage_index", "embedding", "halfvec"),
            ("passage_index", "tsv", "tsvector"),
        ]
        # Stemmed keyword search over the generated column, through its GIN index.
        db.execute("INSERT INTO archives (id, name, created_at, data) VALUES ('a', 'a', 0, '{}')")
        db.execute(
            "INSERT INTO passages (id, archive_id, created_at, text, data)"
            " VALUES ('p', 'a', 0, 'The harbors were running', '{}')"
        )
        db.execute(
            "INSERT INTO passage_index (passage_id, archive_id, created_at, text)"
            " SELECT id, archive_id, created_at, text FROM passages"
        )
        found = db.execute(
            "SELECT passage_id FROM passage_index WHERE tsv @@ websearch_to_tsquery("
            "'english', 'harbor run')"
        ).fetchall()
        assert found == [("p",)]
        # Any dimension fits the column; an HNSW index is per dimension (halfvec <= 4,000).
        db.execute(
            "UPDATE passage_index SET dim = 3, embedding = '[1, 0, 0]'::halfvec"
            " WHERE passage_id = 'p'"
        )
        db.execute(
            "CREATE INDEX passage_index_hnsw_3 ON passage_index"
            " USING hnsw ((embedding::halfvec(3)) halfvec_cosine_ops) WHERE dim = 3"
        )
        nearest = db.execute(
            "SELECT passage_id FROM passage_index WHERE dim = 3"
            " ORDER BY embedding::halfvec(3) <=> '[0.9, 0.1, 0]'::halfvec(3) LIMIT 1"
        ).fetchall()
        assert nearest == [("p",)]


def test_upgrade_from_the_previous_version_moves_in_context_ids(fresh_dsn: str) -> None:
    """Version 8 kept an agent's in-context ids in its JSON; version 9 makes them rows."""
    backend = yoyo.get_backend(_pg_migrations._yoyo_uri(fresh_dsn))
    try:
        migrations = yoyo.read_migrations(str(_pg_migrations.migrations_dir()))
        with backend.lock():
            backend.apply_migrations(backend.to_apply(migrations.filter(lambda m: m.id < "0009")))
    finally:
        backend.connection.close()
    with psycopg.connect(fresh_dsn) as db:
        db.execute(
            "INSERT INTO agents (id, name, agent_type, created_at, updated_at, data)"
            " VALUES ('agent-1', 'ada', 'letta_v1_agent', 0, 0,"
            ' \'{"id": "agent-1", "message_ids": ["m-1", "m-2"]}\')'
        )
    assert _pg_migrations.apply(fresh_dsn) == sum(1 for m in migrations if m.id >= "0009")
    with psycopg.connect(fresh_dsn) as db:
        rows = db.execute(
            "SELECT thread, position, message_id FROM context_messages ORDER BY position"
        ).fetchall()
        agent = db.execute("SELECT context_next, data FROM agents").fetchone()
    assert rows == [("", 0, "m-1"), ("", 1, "m-2")]
    assert agent is not None
    assert agent[0] == 2
    assert "message_ids" not in agent[1]


def test_a_database_from_a_newer_version_is_refused(fresh_dsn: str) -> None:
    _pg_migrations.apply(fresh_dsn)
    with psycopg.connect(fresh_dsn) as db:
        db.execute(
            "INSERT INTO _yoyo_migration (migration_hash, migration_id, applied_at_utc)"
            " VALUES ('future', '9999_from_the_future', now())"
        )
    with pytest.raises(StorageUnavailable, match="newer version"):
        _pg_migrations.apply(fresh_dsn)


def test_an_unreachable_database_is_storage_unavailable(tmp_path: Path) -> None:
    dsn = f"postgresql://kelpie:secret@/kelpie?host={tmp_path}"
    with pytest.raises(StorageUnavailable, match="cannot reach database") as raised:
        _pg_migrations.apply(dsn)
    assert "secret" not in str(raised.value)


def test_the_test_postgres_runs_unprivileged(postgres: LocalPostgres) -> None:
    data_dir = postgres.execute("postgres", "SHOW data_directory").strip()
    owner = Path(data_dir).stat().st_uid
    assert owner != 0 or os.geteuid() != 0
    assert postgres.execute("postgres", "SHOW listen_addresses").strip() == ""
    version = postgres.execute("postgres", "SHOW server_version_num").strip()
    assert int(version) >= _pg_migrations.PG_SERVER_VERSION_MIN

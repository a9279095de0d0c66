"""Schema migrations: applying them to an empty database, idempotence, the `at_head`
shortcut, and the indexes every list path pages through."""

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Final

import pytest

from kelpie.storage import SqliteStore, StorageUnavailable, _migrations

EXPECTED_TABLES: Final = frozenset(
    {
        "agents",
        "agent_tags",
        "blocks",
        "block_tags",
        "agent_blocks",
        "tools",
        "agent_tools",
        "conversations",
        "messages",
        "runs",
        "steps",
        "archives",
        "agent_archives",
        "passages",
    }
)
# The indexes list operations page through: each must end in the strict cursor order.
LIST_PATH_INDEXES: Final = (
    "agents_by_created",
    "agents_by_name",
    "blocks_by_created",
    "blocks_by_label",
    "tools_by_created",
    "tools_by_type",
    "conversations_by_agent",
    "messages_by_agent_conversation",
    "messages_by_run",
    "runs_by_agent",
    "runs_by_conversation",
    "runs_by_status",
    "steps_by_run",
    "steps_by_agent",
    "archives_by_created",
    "passages_by_archive",
)
# Search side tables (0003): filtered by (scope, created_at), never paged by cursor.
SEARCH_INDEX_TABLES: Final = frozenset({"passage_index", "message_index"})
INITIAL_SQL: Final = "0001_initial.sql"
# A partial index (`... WHERE <condition>;`) is matched too.
_CREATE_INDEX: Final = re.compile(r"CREATE INDEX (\w+) ON (\w+) \(([^)]*)\)(?: WHERE [^;]*)?;")


def _initial_indexes() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Index name -> (table, columns), as written in the first migration."""
    text = (_migrations.migrations_dir() / INITIAL_SQL).read_text()
    return {
        name: (table, tuple(column.strip() for column in columns.split(",")))
        for name, table, columns in _CREATE_INDEX.findall(text)
    }


def _migrated(tmp_path: Path) -> Path:
    db_path = tmp_path / "kelpie.db"
    _migrations.apply(db_path)
    return db_path


def _names(db_path: Path, kind: str) -> set[str]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,)).fetchall()
    return {row[0] for row in rows}


def _index_columns(db_path: Path, index: str) -> tuple[str, ...]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute(f"PRAGMA index_info({index})").fetchall()
    # index_info rows are (seqno, cid, name); order by position in the index.
    return tuple(row[2] for row in sorted(rows))


def _schema(db_path: Path) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_migrations_dir_holds_numbered_sql_files() -> None:
    names = sorted(path.name for path in _migrations.migrations_dir().glob("*.sql"))
    assert names[0] == INITIAL_SQL
    assert all(re.fullmatch(r"\d{4}_\w+\.sql", name) for name in names)


def test_apply_creates_every_table_on_an_empty_database(tmp_path: Path) -> None:
    db_path = tmp_path / "kelpie.db"
    applied = _migrations.apply(db_path)
    assert applied == len(list(_migrations.migrations_dir().glob("*.sql")))
    tables = _names(db_path, "table")
    assert tables >= EXPECTED_TABLES
    assert "_yoyo_migration" in tables


def test_apply_creates_named_indexes(tmp_path: Path) -> None:
    db_path = _migrated(tmp_path)
    indexes = _names(db_path, "index")
    assert indexes >= set(_initial_indexes())
    assert _index_columns(db_path, "agents_by_created") == ("created_at", "id")
    assert _index_columns(db_path, "agents_by_updated") == ("updated_at", "id")
    assert _index_columns(db_path, "messages_by_agent_conversation") == (
        "agent_id",
        "conversation_id",
        "created_at",
        "id",
    )
    assert _index_columns(db_path, "agent_tags_by_tag") == ("tag", "agent_id")


def test_apply_builds_indexes_as_the_sql_file_declares(tmp_path: Path) -> None:
    db_path = _migrated(tmp_path)
    declared = _initial_indexes()
    assert len(declared) >= len(LIST_PATH_INDEXES)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        tables = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
    for name, (table, columns) in declared.items():
        assert tables[name] == table, name
        assert _index_columns(db_path, name) == columns, name


@pytest.mark.parametrize("index", LIST_PATH_INDEXES)
def test_list_path_index_ends_in_created_at_then_id(tmp_path: Path, index: str) -> None:
    db_path = _migrated(tmp_path)
    assert index in _initial_indexes()
    assert _index_columns(db_path, index)[-2:] == ("created_at", "id")


def test_every_table_with_created_at_has_a_cursor_index(tmp_path: Path) -> None:
    db_path = _migrated(tmp_path)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        tables = [
            row[0]
            for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if row[0] not in SEARCH_INDEX_TABLES
            and any(
                column[1] == "created_at" for column in db.execute(f"PRAGMA table_info({row[0]})")
            )
        ]
        index_lists = {
            table: db.execute(f"PRAGMA index_list({table})").fetchall() for table in tables
        }
    assert set(tables) == {
        "agents",
        "blocks",
        "tools",
        "conversations",
        "messages",
        "runs",
        "steps",
        "archives",
        "passages",
    }
    for table in tables:
        endings = {_index_columns(db_path, row[1])[-2:] for row in index_lists[table]}
        assert ("created_at", "id") in endings, table


def test_agent_list_order_is_served_by_the_index(tmp_path: Path) -> None:
    db_path = _migrated(tmp_path)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT a.data FROM agents a"
            " WHERE a.hidden = 0 AND (a.created_at, a.id) < (?, ?)"
            " ORDER BY a.created_at DESC, a.id DESC LIMIT ?",
            (0, "agent-x", 10),
        ).fetchall()
    details = " | ".join(row[-1] for row in plan)
    assert "agents_by_created" in details
    assert "TEMP B-TREE" not in details


def test_apply_twice_is_idempotent(tmp_path: Path) -> None:
    db_path = tmp_path / "kelpie.db"
    assert _migrations.apply(db_path) >= 1
    schema = _schema(db_path)
    assert _migrations.apply(db_path) == 0
    assert _schema(db_path) == schema


def test_apply_without_the_at_head_shortcut_applies_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_path = _migrated(tmp_path)
    schema = _schema(db_path)
    # Forces the slow path through yoyo, which must itself skip applied migrations.
    monkeypatch.setattr(_migrations, "at_head", lambda _path: False)
    assert _migrations.apply(db_path) == 0
    assert _schema(db_path) == schema


def test_at_head_false_for_a_missing_file(tmp_path: Path) -> None:
    db_path = tmp_path / "missing.db"
    assert _migrations.at_head(db_path) is False
    assert not db_path.exists()


def test_at_head_false_for_a_fresh_file(tmp_path: Path) -> None:
    db_path = tmp_path / "fresh.db"
    db_path.touch()
    assert _migrations.at_head(db_path) is False


def test_at_head_false_when_a_migration_is_unrecorded(tmp_path: Path) -> None:
    db_path = _migrated(tmp_path)
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("DELETE FROM _yoyo_migration WHERE migration_id = ?", ("0001_initial",))
    assert _migrations.at_head(db_path) is False


def test_at_head_true_after_apply(tmp_path: Path) -> None:
    db_path = _migrated(tmp_path)
    assert _migrations.at_head(db_path) is True


def _broken_migrations(tmp_path: Path) -> Path:
    """A migrations folder whose one migration creates a table, then fails."""
    folder = tmp_path / "broken-migrations"
    folder.mkdir()
    (folder / "0001_broken.sql").write_text(
        "CREATE TABLE half_done (x INTEGER);\nCREATE TABLE oops (;\n"
    )
    return folder


def test_failing_migration_is_storage_unavailable_and_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _broken_migrations(tmp_path)
    monkeypatch.setattr(_migrations, "migrations_dir", lambda: folder)
    db_path = tmp_path / "kelpie.db"
    with pytest.raises(StorageUnavailable, match="cannot migrate"):
        _migrations.apply(db_path)
    assert "half_done" not in _names(db_path, "table")
    assert _migrations.at_head(db_path) is False


def test_open_with_a_failing_migration_is_storage_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _broken_migrations(tmp_path)
    monkeypatch.setattr(_migrations, "migrations_dir", lambda: folder)
    with pytest.raises(StorageUnavailable):
        SqliteStore.open(tmp_path / "kelpie.db")

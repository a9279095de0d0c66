"""Schema migrations: applying them to an empty database, idempotence, the `at_head`
shortcut, and the indexes every list path pages through."""

import asyncio
import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Final

import pytest

from kelpie.env import Entropy
from kelpie.schemas import BLOCK_PREFIX, Block
from kelpie.storage import BlockChange, Page, SqliteStore, StorageUnavailable, _migrations

from ._support import T0

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
        "working_memory",
        "block_history",
    }
)
# Tables whose lists page by their own unique key, not (created_at, id): working memory by
# (agent_id, key), block history by (block_id, seq), both their primary keys.
KEY_PAGED_TABLES: Final = {
    "working_memory": ("agent_id", "key"),
    "block_history": ("block_id", "seq"),
}
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
WORKING_MEMORY_SQL: Final = "0004_working_memory_block_history.sql"
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
        "mcp_servers",
        "api_keys",
        *KEY_PAGED_TABLES,
    }
    for table in set(tables) - set(KEY_PAGED_TABLES):
        endings = {_index_columns(db_path, row[1])[-2:] for row in index_lists[table]}
        assert ("created_at", "id") in endings, table


@pytest.mark.parametrize(("table", "key"), sorted(KEY_PAGED_TABLES.items()))
def test_key_paged_table_pages_by_its_primary_key(
    tmp_path: Path, table: str, key: tuple[str, ...]
) -> None:
    db_path = _migrated(tmp_path)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        columns = db.execute(f"PRAGMA table_info({table})").fetchall()
    # table_info rows are (cid, name, type, notnull, default, pk position or 0).
    primary_key = tuple(column[1] for column in sorted(columns, key=lambda c: c[5]) if column[5])
    assert primary_key == key


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


def test_upgrade_from_the_previous_version_keeps_data_and_adds_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made before working memory and block history gains both, and a block it
    already had starts its history at its first change."""
    current = _migrations.migrations_dir()
    previous = tmp_path / "previous-migrations"
    previous.mkdir()
    for path in sorted(current.glob("*.sql")):
        if path.name < WORKING_MEMORY_SQL:
            (previous / path.name).write_text(path.read_text())
    db_path = tmp_path / "kelpie.db"
    monkeypatch.setattr(_migrations, "migrations_dir", lambda: previous)
    _migrations.apply(db_path)
    assert "block_history" not in _names(db_path, "table")
    block = Block(
        id=Entropy(1).new_id(BLOCK_PREFIX), label="human", value="Ada", created_at=T0, updated_at=T0
    )
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute(
            "INSERT INTO blocks (id, label, is_template, created_at, updated_at, data)"
            " VALUES (?, ?, 0, 0, 0, ?)",
            (block.id, block.label, block.model_dump_json()),
        )
    monkeypatch.setattr(_migrations, "migrations_dir", lambda: current)

    newer = [path for path in current.glob("*.sql") if path.name >= WORKING_MEMORY_SQL]
    assert _migrations.apply(db_path) == len(newer)

    store = SqliteStore.open(db_path)
    try:
        assert asyncio.run(store.get_block(block.id)) == block
        changed = block.model_copy(update={"value": "Grace"})
        asyncio.run(store.update_block(changed, change=BlockChange(source="api")))
        page = Page(limit=10)
        [entry] = asyncio.run(store.list_block_history(block.id, page))
    finally:
        asyncio.run(store.close())
    assert (entry.seq, entry.old.value, entry.new.value) == (1, "Ada", "Grace")


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


def test_messages_across_agents_are_paged_by_an_index(tmp_path: Path) -> None:
    db_path = _migrated(tmp_path)
    assert _index_columns(db_path, "messages_by_created") == ("created_at", "id")
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT m.data FROM messages m"
            " WHERE (m.created_at, m.id) < (?, ?) ORDER BY m.created_at DESC, m.id DESC LIMIT ?",
            (0, "message-x", 10),
        ).fetchall()
    details = " | ".join(row[-1] for row in plan)
    assert "messages_by_created" in details
    assert "TEMP B-TREE" not in details


def test_a_version_1_database_is_upgraded_with_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_first = tmp_path / "version-1"
    only_first.mkdir()
    (only_first / INITIAL_SQL).write_text((_migrations.migrations_dir() / INITIAL_SQL).read_text())
    db_path = tmp_path / "kelpie.db"
    with monkeypatch.context() as patched:
        patched.setattr(_migrations, "migrations_dir", lambda: only_first)
        _migrations.apply(db_path)
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute(
            "INSERT INTO agents (id, name, agent_type, created_at, updated_at, data)"
            " VALUES ('agent-1', 'ada', 'letta_v1_agent', 1, 1, '{}')"
        )
        db.execute(
            "INSERT INTO messages (id, agent_id, role, created_at, data)"
            " VALUES ('message-1', 'agent-1', 'system', 1, '{}')"
        )
    assert "messages_by_created" not in _names(db_path, "index")

    applied = _migrations.apply(db_path)

    assert applied == len(list(_migrations.migrations_dir().glob("*.sql"))) - 1
    assert "messages_by_created" in _names(db_path, "index")
    assert _migrations.at_head(db_path) is True
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("SELECT id FROM messages").fetchall() == [("message-1",)]


def test_in_context_ids_move_from_the_json_rows_to_context_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 9: each agent's `message_ids` and each conversation's in-context ids become
    rows of context_messages, in order, and leave the rows' JSON."""
    current = _migrations.migrations_dir()
    previous = tmp_path / "before-context-messages"
    previous.mkdir()
    for path in sorted(current.glob("*.sql")):
        if path.name < "0009":
            (previous / path.name).write_text(path.read_text())
    db_path = tmp_path / "kelpie.db"
    with monkeypatch.context() as patched:
        patched.setattr(_migrations, "migrations_dir", lambda: previous)
        _migrations.apply(db_path)
    agent = '{"id": "agent-1", "message_ids": ["m-sys", "m-1", "m-2"]}'
    conversation = (
        '{"id": "conv-1", "agent_id": "agent-1", "in_context_message_ids": ["c-0", "c-1"]}'
    )
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute(
            "INSERT INTO agents (id, name, agent_type, created_at, updated_at, data)"
            " VALUES ('agent-1', 'ada', 'letta_v1_agent', 1, 1, ?)",
            (agent,),
        )
        db.execute(
            "INSERT INTO conversations (id, agent_id, created_at, updated_at, data)"
            " VALUES ('conv-1', 'agent-1', 1, 1, ?)",
            (conversation,),
        )

    _migrations.apply(db_path)

    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute(
            "SELECT thread, message_id FROM context_messages ORDER BY thread, position"
        ).fetchall()
        heads = db.execute(
            "SELECT (SELECT context_next FROM agents), (SELECT context_next FROM conversations)"
        ).fetchone()
        agent_json = db.execute("SELECT data FROM agents").fetchone()[0]
        conversation_json = db.execute("SELECT data FROM conversations").fetchone()[0]
    assert rows == [("", "m-sys"), ("", "m-1"), ("", "m-2"), ("conv-1", "c-0"), ("conv-1", "c-1")]
    assert heads == (3, 2)
    assert "message_ids" not in agent_json
    assert "in_context_message_ids" not in conversation_json

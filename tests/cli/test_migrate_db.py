"""`kelpie migrate-db`: a SQLite store copied into a new PostgreSQL database prints a line
per table (rows, rate), the table of counts and checksums, and "verified" (exit 0); bad
input is one line on stderr and exit 2, with nothing written to the target. (The copy
itself is tested in tests/storage/test_transfer.py.)"""

import asyncio
import itertools
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import psycopg
import pytest
from click.testing import CliRunner

from kelpie.cli import main
from kelpie.schemas import AgentConfig, LlmConfig
from kelpie.storage import SqliteStore
from kelpie.storage._pgserver import LocalPostgres
from kelpie.storage._postgres import PostgresStore

AGENT_ID: Final = "agent-00000000-0000-4000-8000-000000000001"
_DATABASES: Final = itertools.count()


async def _seed(path: Path) -> AgentConfig:
    import datetime as dt

    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    agent = AgentConfig(
        id=AGENT_ID,
        name="ada",
        llm_config=LlmConfig(model="m", model_endpoint_type="openai", context_window=8_000),
        created_at=at,
        updated_at=at,
    )
    store = SqliteStore.open(path)
    try:
        await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=("x",))
    finally:
        await store.close()
    return agent


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("migrate-db") / "kelpie.db"
    asyncio.run(_seed(path))
    return path


@pytest.fixture
def new_database(postgres: LocalPostgres) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        made.append(f"kelpie_migrate_cli_{next(_DATABASES)}")
        postgres.drop_database(made[-1])
        return postgres.create_database(made[-1])

    yield make
    for name in made:
        postgres.drop_database(name)


def _tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as db:
        rows = db.execute(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return sorted(str(row[0]) for row in rows)


def _run(source: str, target: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["migrate-db", "--from", source, "--to", target])
    return result.exit_code, result.stdout, result.stderr


def test_migrates_prints_progress_and_verified(
    source: Path, new_database: Callable[[], str]
) -> None:
    target = new_database()

    code, out, err = _run(f"sqlite:///{source}", target)

    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[-1] == "verified"
    assert any(line.split()[:2] == ["agents", "1"] and "rows/s" in line for line in lines)
    assert any(line.split()[:3] == ["agents", "1", "1"] and "equal" in line for line in lines)

    async def read() -> AgentConfig | None:
        store = PostgresStore.connect(target)
        try:
            return await store.get_agent(AGENT_ID)
        finally:
            await store.close()

    copied = asyncio.run(read())
    assert copied is not None
    assert copied.name == "ada"


def _not_sqlite(tmp_path: Path, source: Path) -> str:
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    return f"sqlite:///{path}"


def _behind(tmp_path: Path, source: Path) -> str:
    path = tmp_path / "old.db"
    shutil.copy(source, path)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM _yoyo_migration WHERE migration_id = '0010_pending_by_seq'")
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("make_source", "target_kind", "says"),
    [
        (lambda tmp, src: f"sqlite:///{tmp}/missing.db", "new", "no SQLite database at"),
        (_not_sqlite, "new", "is not a SQLite database"),
        (_behind, "new", "lacks schema migrations 0010_pending_by_seq"),
        (lambda tmp, src: f"sqlite:///{src}", "unreachable", "cannot reach"),
        (lambda tmp, src: f"sqlite:///{src}", "foreign", "tables that are not Kelpie's (notes)"),
        (lambda tmp, src: "SAME", "new", "--from and --to name the same database"),
        (lambda tmp, src: "postgresql://postgres@/other", "new", "--from must be a SQLite URL"),
    ],
    ids=["missing", "not-sqlite", "behind", "unreachable", "foreign", "same", "from-postgres"],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    source: Path,
    new_database: Callable[[], str],
    tmp_path: Path,
    make_source: Callable[[Path, Path], str],
    target_kind: str,
    says: str,
) -> None:
    target = new_database()
    if target_kind == "foreign":
        with psycopg.connect(target, autocommit=True) as db:
            db.execute("CREATE TABLE notes (id int PRIMARY KEY)")
    given = target
    if target_kind == "unreachable":
        given = f"postgresql://postgres@/kelpie?host={tmp_path}/no-server-here"
    from_url = make_source(tmp_path, source)
    if from_url == "SAME":
        from_url = given

    code, out, err = _run(from_url, given)

    assert code == 2, out + err
    assert err.count("\n") == 1, err
    assert err.startswith("kelpie migrate-db: ")
    assert says in err
    assert _tables(target) == (["notes"] if target_kind == "foreign" else [])

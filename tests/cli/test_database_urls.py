"""Which database a command uses: `--db` / KELPIE_DB_URL names SQLite (`sqlite:///path`, the
default in the data dir) or PostgreSQL (`postgresql://...`). One that cannot be used ends
start-up with a sentence saying why (never a traceback), and `kelpie doctor` says the
same; a reachable PostgreSQL is migrated, reported current, with pgvector's indexes."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from kelpie.cli._doctor import check_database
from kelpie.cli._env import open_store
from kelpie.env import Config
from kelpie.storage._pgserver import LocalPostgres

# Nothing listens on port 1 of loopback: connecting is refused at once.
UNREACHABLE: Final = "postgresql://kelpie@127.0.0.1:1/kelpie?connect_timeout=2"


def test_an_unknown_scheme_is_refused_with_the_schemes_that_work(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        open_store(Config(data_dir=tmp_path, db_url="mysql://x/y"))
    assert "Unsupported database URL 'mysql://x/y'" in str(stopped.value)
    assert "postgresql://" in str(stopped.value)


def test_an_unreachable_postgresql_stops_start_up_saying_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        open_store(Config(data_dir=tmp_path, db_url=UNREACHABLE))
    assert "The database cannot be used: cannot reach database" in str(stopped.value)
    [finding] = check_database(Config(data_dir=tmp_path, db_url=UNREACHABLE))
    assert finding.status == "FAIL"
    assert "cannot reach database" in finding.detail


def test_serve_on_an_unreachable_postgresql_exits_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KELPIE_", "LETTA_"))}
    argv = [sys.executable, "-m", "kelpie", "serve", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*argv, "--db", UNREACHABLE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "The database cannot be used: cannot reach database" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_postgresql_url_opens_a_migrated_store_that_doctor_finds_current(
    postgres: LocalPostgres, tmp_path: Path
) -> None:
    postgres.drop_database("kelpie_cli_urls")
    config = Config(data_dir=tmp_path, db_url=postgres.create_database("kelpie_cli_urls"))
    store = open_store(config, serving=False)
    assert type(store).__name__ == "PostgresStore"
    found = {finding.check: finding for finding in check_database(config)}
    assert {check: f.status for check, f in found.items()} == {
        "database": "ok",
        "migrations": "ok",
        "pgvector": "ok",
    }
    assert not (tmp_path / "kelpie.db").exists()
    assert dataclasses.replace(config, db_url=None).database_url.startswith("sqlite:///")

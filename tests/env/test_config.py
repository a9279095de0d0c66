"""Config: the documented environment variables, defaults, overrides, database_url."""

from pathlib import Path
from typing import Final

import pytest

from kelpie.env import Config

FULL_ENVIRON: Final = {
    "KELPIE_HOST": "0.0.0.0",
    "KELPIE_PORT": "9123",
    "KELPIE_DATA_DIR": "/srv/kelpie",
    "KELPIE_DB_URL": "sqlite:////var/lib/kelpie/main.db",
    "OPENAI_API_KEY": "sk-openai",
    "OPENAI_BASE_URL": "http://127.0.0.1:9999/v1",
    "ANTHROPIC_API_KEY": "sk-anthropic",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9998",
    "KELPIE_DEFAULT_MODEL": "openai/gpt-4o-mini",
    "KELPIE_CONTEXT_WINDOW_DEFAULT": "32000",
    "KELPIE_SERVER_PASSWORD": "hunter2",
    "KELPIE_EMBEDDING_MODEL": "openai/nomic-embed-text",
    "KELPIE_EMBEDDING_DIM": "768",
    "KELPIE_EMBEDDING_BASE_URL": "http://127.0.0.1:11434/v1",
}


def test_config_from_environ_reads_every_variable() -> None:
    config = Config.from_environ(FULL_ENVIRON)
    assert config == Config(
        host="0.0.0.0",
        port=9123,
        data_dir=Path("/srv/kelpie"),
        db_url="sqlite:////var/lib/kelpie/main.db",
        openai_api_key="sk-openai",
        openai_base_url="http://127.0.0.1:9999/v1",
        anthropic_api_key="sk-anthropic",
        anthropic_base_url="http://127.0.0.1:9998",
        default_model="openai/gpt-4o-mini",
        context_window_default=32_000,
        server_password="hunter2",
        embedding_model="openai/nomic-embed-text",
        embedding_dim=768,
        embedding_base_url="http://127.0.0.1:11434/v1",
    )
    assert isinstance(config.port, int)
    assert config.database_url == "sqlite:////var/lib/kelpie/main.db"


def test_config_from_empty_environ_uses_defaults() -> None:
    config = Config.from_environ({})
    assert config.host == "127.0.0.1"
    assert config.port == 8283
    assert config.data_dir == Path("~/.kelpie").expanduser()
    assert config.db_url is None
    assert config.openai_api_key is None
    assert config.openai_base_url is None
    assert config.anthropic_api_key is None
    assert config.default_model is None
    assert config.context_window_default == 128_000
    assert config.server_password is None
    assert config == Config()


def test_config_from_environ_ignores_unrelated_variables() -> None:
    assert Config.from_environ({"PORT": "1", "DATA_DIR": "/x", "HOME": "/root"}) == Config()


def test_config_blank_variables_count_as_unset() -> None:
    config = Config.from_environ({"KELPIE_PORT": "  ", "OPENAI_BASE_URL": "", "KELPIE_HOST": " "})
    assert config.port == 8283
    assert config.openai_base_url is None
    assert config.host == "127.0.0.1"


def test_config_values_are_stripped() -> None:
    config = Config.from_environ({"KELPIE_PORT": " 9000\n", "OPENAI_BASE_URL": " http://x/v1 "})
    assert config.port == 9000
    assert config.openai_base_url == "http://x/v1"


def test_config_data_dir_expands_user() -> None:
    config = Config.from_environ({"KELPIE_DATA_DIR": "~/kelpie-data"})
    assert config.data_dir == Path.home() / "kelpie-data"


def test_config_overrides_win_over_environ() -> None:
    config = Config.from_environ(
        {"KELPIE_PORT": "9001", "KELPIE_DATA_DIR": "/from/env", "OPENAI_BASE_URL": "http://env"},
        port=9002,
        data_dir=Path("/from/flag"),
        openai_base_url="http://flag",
    )
    assert config.port == 9002
    assert config.data_dir == Path("/from/flag")
    assert config.openai_base_url == "http://flag"


def test_config_none_overrides_are_ignored() -> None:
    config = Config.from_environ(
        {"KELPIE_PORT": "9001", "KELPIE_HOST": "0.0.0.0"}, port=None, host=None, db_url=None
    )
    assert config.port == 9001
    assert config.host == "0.0.0.0"
    assert config.db_url is None


def test_config_override_without_environ_value() -> None:
    assert Config.from_environ({}, server_password="pw").server_password == "pw"


def test_config_unknown_override_is_rejected() -> None:
    with pytest.raises(TypeError):
        Config.from_environ({}, not_a_field=1)


def test_config_database_url_defaults_to_file_in_data_dir(tmp_path: Path) -> None:
    config = Config.from_environ({"KELPIE_DATA_DIR": str(tmp_path)})
    assert config.database_url == f"sqlite:///{tmp_path}/kelpie.db"
    assert Config(data_dir=Path("/data")).database_url == "sqlite:////data/kelpie.db"


def test_config_database_url_prefers_db_url() -> None:
    config = Config(data_dir=Path("/data"), db_url="sqlite:////elsewhere.db")
    assert config.database_url == "sqlite:////elsewhere.db"


def test_config_letta_server_password_is_a_fallback() -> None:
    assert Config.from_environ({"LETTA_SERVER_PASSWORD": "letta"}).server_password == "letta"
    both = {"LETTA_SERVER_PASSWORD": "letta", "KELPIE_SERVER_PASSWORD": "kelpie"}
    assert Config.from_environ(both).server_password == "kelpie"


def test_config_non_numeric_port_is_rejected() -> None:
    with pytest.raises(ValueError, match="KELPIE_PORT must be an integer, not 'eighty'"):
        Config.from_environ({"KELPIE_PORT": "eighty"})


def test_config_is_immutable() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]

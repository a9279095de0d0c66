"""The TOML config file: every setting it may set, precedence flags > env > file > defaults,
and clear errors naming the key."""

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from kelpie.cli import main
from kelpie.env import SETTINGS, Config, ConfigError, read_config_file


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kelpie.toml"
    path.write_text(text)
    return path


def test_every_config_field_is_a_setting() -> None:
    assert [s.field for s in SETTINGS] == [f.name for f in dataclasses.fields(Config)]
    names = [name for setting in SETTINGS for name in setting.env]
    assert len(names) == len(set(names)), "one environment variable sets one setting"


def test_config_file_sets_settings(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
port = 9100
host = "0.0.0.0"
data_dir = "data"
idle_timeout_s = 30
code_sessions = false
mcp_stdio_paths = ["/srv", "repos"]
log_format = "JSON"
log_level = "warning"
openai_api_key = ""
""",
    )
    config = Config.from_environ({}, config_file=path)
    assert (config.port, config.host) == (9100, "0.0.0.0")
    assert config.data_dir == tmp_path / "data"  # relative to the file
    assert config.idle_timeout_s == 30.0
    assert config.code_sessions is False
    assert config.mcp_stdio_paths == (Path("/srv"), tmp_path / "repos")
    assert (config.log_format, config.log_level) == ("json", "warning")
    assert config.openai_api_key is None  # empty: unset, as an empty variable is


def test_flags_win_over_environment_over_file_over_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, 'port = 9100\nhost = "10.0.0.1"\ndb_url = "sqlite:////f.db"\n')
    environ = {"KELPIE_PORT": "9200", "KELPIE_HOST": "10.0.0.2"}
    config = Config.from_environ(environ, config_file=path, port=9300, host=None)
    assert config.port == 9300  # flag
    assert config.host == "10.0.0.2"  # environment
    assert config.db_url == "sqlite:////f.db"  # file
    assert config.connections_max == Config().connections_max  # default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown key 'prot' (did you mean 'port'?)"),
        ("[server]\nport = 1\n", "unknown key 'server'"),
        ('port = "8283"\n', "'port' must be an integer, not '8283' (str)"),
        ("port = true\n", "'port' must be an integer"),
        ("metrics = 1\n", "'metrics' must be true or false, not 1 (int)"),
        ("idle_timeout_s = [1]\n", "'idle_timeout_s' must be a number"),
        ("connections_max = 0\n", "'connections_max' must be positive"),
        ('log_format = "xml"\n', "'log_format' must be text or json, not 'xml'"),
        ('mcp_stdio_paths = "/srv"\n', "'mcp_stdio_paths' must be a list of strings"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_config_file_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        read_config_file(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        read_config_file(tmp_path / "absent.toml")


def test_serve_stops_at_start_up_on_a_wrong_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "sandbox_pool = 2\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(path)], env={})
    assert result.exit_code == 1
    assert "unknown key 'sandbox_pool' (did you mean 'sandbox_pool_size'?)" in result.output
    assert "Traceback" not in result.output


def test_serve_reports_a_wrong_environment_value_without_a_traceback() -> None:
    result = CliRunner().invoke(main, ["serve"], env={"KELPIE_PORT": "eighty"})
    assert result.exit_code == 1
    assert "KELPIE_PORT must be an integer, not 'eighty'" in result.output

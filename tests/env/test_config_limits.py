"""Config: the abuse limits' variables (header and body timeouts, connection cap, failed
authentication throttle)."""

import pytest

from kelpie.env import Config


def test_config_limits_have_defaults() -> None:
    config = Config.from_environ({})

    assert (config.header_timeout_s, config.body_timeout_s) == (10.0, 30.0)
    assert config.connections_max == 1_000
    assert (config.auth_failures_max, config.auth_failure_window_s) == (10, 60.0)


def test_config_limits_are_read_from_the_environment() -> None:
    config = Config.from_environ(
        {
            "KELPIE_HEADER_TIMEOUT_S": "2.5",
            "KELPIE_BODY_TIMEOUT_S": "4",
            "KELPIE_CONNECTIONS_MAX": "64",
            "KELPIE_AUTH_FAILURES_MAX": "3",
            "KELPIE_AUTH_FAILURE_WINDOW_S": "600",
        }
    )

    assert (config.header_timeout_s, config.body_timeout_s) == (2.5, 4.0)
    assert config.connections_max == 64
    assert (config.auth_failures_max, config.auth_failure_window_s) == (3, 600.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KELPIE_HEADER_TIMEOUT_S", "0"),
        ("KELPIE_BODY_TIMEOUT_S", "-1"),
        ("KELPIE_BODY_TIMEOUT_S", "nan"),
        ("KELPIE_CONNECTIONS_MAX", "0"),
        ("KELPIE_AUTH_FAILURES_MAX", "-3"),
        ("KELPIE_AUTH_FAILURE_WINDOW_S", "0"),
    ],
)
def test_config_limits_must_be_positive(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Config.from_environ({name: value})

"""Config: the observability variables (KELPIE_METRICS, KELPIE_LOG_FORMAT)."""

import pytest

from kelpie.env import Config


def test_by_default_metrics_are_on_and_logs_are_text() -> None:
    config = Config.from_environ({})

    assert config.metrics is True
    assert config.log_format == "text"


@pytest.mark.parametrize(("value", "on"), [("0", False), ("off", False), ("1", True)])
def test_metrics_switch(value: str, on: bool) -> None:
    assert Config.from_environ({"KELPIE_METRICS": value}).metrics is on


@pytest.mark.parametrize("value", ["json", "JSON", "text"])
def test_log_format_is_read(value: str) -> None:
    assert Config.from_environ({"KELPIE_LOG_FORMAT": value}).log_format == value.lower()


def test_an_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="KELPIE_LOG_FORMAT must be text or json, not 'xml'"):
        Config.from_environ({"KELPIE_LOG_FORMAT": "xml"})


def test_metrics_switch_refuses_a_value_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="KELPIE_METRICS"):
        Config.from_environ({"KELPIE_METRICS": "sometimes"})

"""Config: the web tools' variables (search service, Exa key, private addresses)."""

import pytest

from kelpie.env import Config


def test_the_web_variables_are_read() -> None:
    config = Config.from_environ(
        {
            "KELPIE_WEB_SEARCH_URL": "http://127.0.0.1:8888",
            "EXA_API_KEY": "exa-key",
            "KELPIE_WEB_ALLOW_PRIVATE": "1",
        }
    )
    assert config.web_search_url == "http://127.0.0.1:8888"
    assert config.exa_api_key == "exa-key"
    assert config.web_allow_private is True


def test_without_them_there_is_no_search_service_and_private_addresses_are_refused() -> None:
    config = Config.from_environ({})
    assert (config.web_search_url, config.exa_api_key, config.web_allow_private) == (
        None,
        None,
        False,
    )


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("0", False), ("false", False)],
)
def test_allow_private_reads_the_usual_spellings(value: str, allowed: bool) -> None:
    assert Config.from_environ({"KELPIE_WEB_ALLOW_PRIVATE": value}).web_allow_private is allowed


def test_allow_private_refuses_a_value_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="KELPIE_WEB_ALLOW_PRIVATE"):
        Config.from_environ({"KELPIE_WEB_ALLOW_PRIVATE": "maybe"})

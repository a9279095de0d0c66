"""Fixtures for the letta-code end-to-end test: the CLI, installed once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._letta_code import LettaCode, install_letta_code

# Any key will do: the test server is not in password mode.
API_KEY = "sk-letta-code-e2e"


@pytest.fixture(scope="session")
def letta_code_bin() -> Path:
    """The directory holding the pinned `letta` and the `node` it runs on."""
    return install_letta_code()


@pytest.fixture
def letta_code(letta_code_bin: Path, kelpie_server: str, tmp_path: Path) -> LettaCode:
    """The CLI pointed at this module's Kelpie server, as a new user in a new project."""
    return LettaCode(letta_code_bin, kelpie_server, API_KEY, tmp_path)

"""The start-up warning (issue 14): a server bound to an address other than loopback with
no password says so; on loopback, or with a password, it does not."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import pytest

from kelpie.cli._exposure import exposure_warning, is_loopback
from kelpie.env import Config

WARNING_LINE: Final = "WARNING kelpie: serving on 0.0.0.0 without a password"
WARNING_TIMEOUT_S: Final = 15.0


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("kelpie.example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_without_password_warns() -> None:
    warning = exposure_warning(Config(host="0.0.0.0"))

    assert warning is not None
    assert "0.0.0.0" in warning
    assert "without a password" in warning
    assert "KELPIE_SERVER_PASSWORD" in warning


def test_non_loopback_with_password_does_not_warn() -> None:
    assert exposure_warning(Config(host="0.0.0.0", server_password="secret")) is None


def test_non_loopback_with_api_keys_does_not_warn() -> None:
    assert exposure_warning(Config(host="0.0.0.0"), api_keys=True) is None


def test_loopback_does_not_warn() -> None:
    assert exposure_warning(Config(host="127.0.0.1")) is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_serve_on_all_interfaces_prints_the_warning(tmp_path: Path) -> None:
    """The warning comes once the store is open (it asks whether any API key was made),
    before the socket is bound: the test stops the server once it has been written."""
    argv = [sys.executable, "-m", "kelpie", "serve", "--host", "0.0.0.0"]
    argv += ["--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KELPIE_", "LETTA_"))}
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("wb") as stderr:
        server = subprocess.Popen(argv, env=environ, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + WARNING_TIMEOUT_S
            while WARNING_LINE not in stderr_path.read_text() and time.monotonic() < deadline:
                assert server.poll() is None, stderr_path.read_text()
                time.sleep(0.05)
        finally:
            server.terminate()
            server.wait(timeout=10)

    assert WARNING_LINE in stderr_path.read_text()

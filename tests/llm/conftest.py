"""The fake LLM server, with its script emptied around every test so that what one test
queues never answers another (the server is shared by the session)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ._support import FakeLlm


@pytest.fixture(scope="session")
def fake_llm_session(llm_server: str) -> Iterator[FakeLlm]:
    fake = FakeLlm(llm_server)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def fake_llm(fake_llm_session: FakeLlm) -> Iterator[FakeLlm]:
    fake_llm_session.clear()
    try:
        yield fake_llm_session
    finally:
        fake_llm_session.clear()


@pytest.fixture
def refused_url() -> str:
    """A base URL where nothing listens: the port was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"

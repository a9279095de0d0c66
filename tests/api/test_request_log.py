"""The request log (issue 14): one line per request with method, route template, status,
duration and the agent and run ids the path names; never headers, bodies or query
strings; JSON lines with `KELPIE_LOG_FORMAT=json`. In process through the ASGI app (with
`caplog`), and from a served process's stderr."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kelpie.api import create_app
from kelpie.cli._env import open_env
from kelpie.env import Config
from kelpie.memory import HASHING_MODEL

from ._support import KelpieStarter

REQUEST_LOGGER = "kelpie.http"
SECRET = "sk-do-not-log-me"
# Well-formed ids of nothing stored: the requests answer 404.
AGENT_ID = "agent-00000000-0000-4000-8000-000000000123"
RUN_ID = "run-00000000-0000-4000-8000-000000000042"

Requests = Callable[[httpx.AsyncClient], Awaitable[None]]


def serve_in_process(tmp_path: Path, requests: Requests, **config: Any) -> None:
    """Sends `requests` to a fresh app (no lifespan: no background work is needed)."""
    env = open_env(
        Config(
            data_dir=tmp_path / "data",
            embedding_model=HASHING_MODEL,
            sandbox_pool_size=0,
            **config,
        )
    )

    async def main() -> None:
        transport = httpx.ASGITransport(app=create_app(env))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://kelpie") as http:
                await requests(http)
        finally:
            await env.store.close()

    asyncio.run(main())


def request_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == REQUEST_LOGGER]


class TestRequestLine:
    def test_one_line_with_route_template_status_duration_and_agent_id(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def requests(http: httpx.AsyncClient) -> None:
            await http.get(f"/v1/agents/{AGENT_ID}/messages", params={"limit": "5"})

        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            serve_in_process(tmp_path, requests)

        (line,) = request_records(caplog)
        fields: Any = line.__dict__
        assert line.levelno == logging.INFO
        assert fields["method"] == "GET"
        assert fields["route"] == "/v1/agents/{agent_id}/messages"
        assert fields["status"] == 404
        assert fields["agent_id"] == AGENT_ID
        assert isinstance(fields["duration_ms"], float)
        assert line.getMessage().startswith("GET /v1/agents/{agent_id}/messages 404 ")
        assert line.getMessage().endswith(f" ms agent_id={AGENT_ID}")
        assert "limit" not in line.getMessage()

    def test_run_id_is_logged_from_the_path(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def requests(http: httpx.AsyncClient) -> None:
            await http.get(f"/v1/runs/{RUN_ID}")

        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            serve_in_process(tmp_path, requests)

        (line,) = request_records(caplog)
        assert line.__dict__["route"] == "/v1/runs/{run_id}"
        assert line.__dict__["run_id"] == RUN_ID

    def test_a_trailing_slash_still_names_the_route(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def requests(http: httpx.AsyncClient) -> None:
            await http.get("/v1/agents/")

        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            serve_in_process(tmp_path, requests)

        (line,) = request_records(caplog)
        assert line.__dict__["route"] == "/v1/agents"
        assert line.__dict__["status"] == 200

    def test_an_unrouted_path_is_quoted_with_control_characters_escaped(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def requests(http: httpx.AsyncClient) -> None:
            await http.get("/nowhere%0AINFO%20forged")

        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            serve_in_process(tmp_path, requests)

        (line,) = request_records(caplog)
        assert line.__dict__["route"] == "unrouted"
        assert line.__dict__["status"] == 404
        assert "\n" not in line.getMessage()
        assert line.__dict__["path"] == "/nowhere\\nINFO forged"

    def test_secrets_in_headers_bodies_and_queries_are_never_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def requests(http: httpx.AsyncClient) -> None:
            await http.post(
                "/v1/agents/",
                params={"api_key": SECRET},
                headers={"Authorization": f"Bearer {SECRET}", "X-Bare-Password": SECRET},
                json={"name": "a", "secrets": {"TOKEN": SECRET}, "model": "nope/nope"},
            )
            await http.get("/v1/health", headers={"Authorization": f"Bearer {SECRET}"})

        with caplog.at_level(logging.DEBUG):
            serve_in_process(tmp_path, requests)

        assert len(request_records(caplog)) == 2
        # The server's records (the test's own HTTP client logs the URL it was given).
        for record in (r for r in caplog.records if not r.name.startswith("httpx")):
            assert SECRET not in record.getMessage()
            assert SECRET not in json.dumps(record.__dict__, default=str)

    def test_a_refused_password_is_logged_without_it(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def requests(http: httpx.AsyncClient) -> None:
            await http.get("/v1/agents", headers={"Authorization": f"Bearer {SECRET}"})

        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            serve_in_process(tmp_path, requests, server_password="the-password")

        (line,) = request_records(caplog)
        assert line.__dict__["status"] == 401
        assert SECRET not in line.getMessage()

    def test_metrics_scrapes_are_not_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def requests(http: httpx.AsyncClient) -> None:
            assert (await http.get("/metrics")).status_code == 200

        with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
            serve_in_process(tmp_path, requests)

        assert request_records(caplog) == []


def stderr_of(kelpie_launcher: KelpieStarter, base_url: str) -> str:
    """The served process's stderr so far: tests/conftest.py's launcher writes it to
    `logs/kelpie.stderr.log` beside the server's data directory."""
    log_file = kelpie_launcher.data_dirs[base_url].parent / "logs" / "kelpie.stderr.log"
    return log_file.read_text(errors="replace")


def test_served_process_writes_json_request_lines(kelpie_launcher: KelpieStarter) -> None:
    base_url = kelpie_launcher.start({"KELPIE_LOG_FORMAT": "json"})
    with httpx.Client(base_url=base_url) as http:
        http.get(f"/v1/agents/{AGENT_ID}/messages", headers={"Authorization": f"Bearer {SECRET}"})
    kelpie_launcher.stop(base_url)

    lines = stderr_of(kelpie_launcher, base_url).splitlines()
    entries = [json.loads(line) for line in lines]
    requests = [e for e in entries if e["logger"] == REQUEST_LOGGER]
    probe = next(e for e in requests if e.get("agent_id") == AGENT_ID)
    assert probe["method"] == "GET"
    assert probe["route"] == "/v1/agents/{agent_id}/messages"
    assert probe["status"] == 404
    assert probe["level"] == "INFO"
    assert isinstance(probe["duration_ms"], float)
    # uvicorn's own lines are JSON too, and nothing carries the client's secret.
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    assert SECRET not in "\n".join(lines)

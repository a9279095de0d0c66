"""Fixtures that run real processes: the fake OpenAI-compatible LLM and a Kelpie server.

Every server gets its own free port and its own data directory, so the suite can run
under pytest-xdist. Process output goes to files in a temporary directory (a PIPE nobody
reads fills up and stalls the server), and is quoted in the failure message when a server
does not come up or does not stop.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Final, TypeAlias

import httpx
import pytest
from letta_client import Letta

from kelpie.storage._pgserver import LocalPostgres

TESTS_DIR: Final = Path(__file__).resolve().parent
FAKE_LLM_SCRIPT: Final = TESTS_DIR / "fakes" / "llm_server.py"

READY_POLL_INTERVAL_S: Final = 0.02
READY_TIMEOUT_S: Final = 15.0
READY_PROBE_TIMEOUT_S: Final = 1.0
STOP_TIMEOUT_S: Final = 10.0
OUTPUT_QUOTE_CHARS_MAX: Final = 8_000
CLIENT_TIMEOUT_S: Final = 60.0

# A dummy key: a self-hosted server accepts anything unless password mode is on.
CLIENT_API_KEY: Final = "sk-kelpie-test"
LLM_API_KEY: Final = "sk-test"
# Variables of the test runner's environment that would change what the server does.
SERVER_ENV_DROPPED: Final = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")
SERVER_ENV_PREFIXES_DROPPED: Final = ("KELPIE_", "LETTA_")
TEST_BACKEND_VARIABLE: Final = "KELPIE_TEST_BACKEND"
TEST_BACKENDS: Final = ("sqlite", "postgres")


ServerOutputMark: TypeAlias = tuple["ServerProcess", int]
# Where each test's share of the server's stderr starts, so a failure can quote just that.
SERVER_OUTPUT_MARK: Final = pytest.StashKey[ServerOutputMark]()
# Running Kelpie servers by base URL, for the report hook below.
KELPIE_SERVERS: Final[dict[str, ServerProcess]] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclasses.dataclass
class ServerProcess:
    """A server subprocess whose stdout and stderr are written to files."""

    name: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    _log_files: list[IO[bytes]]

    @classmethod
    def start(
        cls, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_dir: Path
    ) -> ServerProcess:
        log_dir.mkdir(parents=True, exist_ok=True)
        stdout_path = log_dir / f"{name}.stdout.log"
        stderr_path = log_dir / f"{name}.stderr.log"
        stdout = stdout_path.open("wb")
        stderr = stderr_path.open("wb")
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=dict(env),
                cwd=log_dir,
            )
        except BaseException:
            stdout.close()
            stderr.close()
            raise
        return cls(name, process, stdout_path, stderr_path, [stdout, stderr])

    def stderr_size(self) -> int:
        return self.stderr_path.stat().st_size

    def stderr_since(self, offset: int) -> str:
        with self.stderr_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        if len(text) > OUTPUT_QUOTE_CHARS_MAX:
            text = "…" + text[-OUTPUT_QUOTE_CHARS_MAX:]
        return text

    def output(self) -> str:
        """The tail of what the process has written so far, for failure messages."""
        parts = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            text = path.read_text(errors="replace")
            if len(text) > OUTPUT_QUOTE_CHARS_MAX:
                text = "…" + text[-OUTPUT_QUOTE_CHARS_MAX:]
            parts.append(f"--- {self.name} {label} ---\n{text}")
        return "\n".join(parts)

    def wait_until_ready(self, url: str) -> None:
        """Polls `url` until it answers 200; fails the test with the server's output if not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_problem = "no answer yet"
        with httpx.Client(timeout=READY_PROBE_TIMEOUT_S) as probe:
            while True:
                returncode = self.process.poll()
                if returncode is not None:
                    pytest.fail(
                        f"{self.name} exited with code {returncode} before answering "
                        f"{url}\n{self.output()}",
                        pytrace=False,
                    )
                try:
                    response = probe.get(url)
                except httpx.TransportError as exc:
                    last_problem = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last_problem = f"HTTP {response.status_code}: {response.text[:500]}"
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{self.name} did not answer 200 at {url} within {READY_TIMEOUT_S} s "
                        f"(last: {last_problem})\n{self.output()}",
                        pytrace=False,
                    )
                time.sleep(READY_POLL_INTERVAL_S)

    def stop(self) -> int:
        """Sends SIGTERM and waits; fails if the process has not exited in time."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
            try:
                return self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                pytest.fail(
                    f"{self.name} did not exit within {STOP_TIMEOUT_S} s of SIGTERM\n"
                    f"{self.output()}",
                    pytrace=False,
                )
        finally:
            for log_file in self._log_files:
                log_file.close()


def _stop_checked(server: ServerProcess) -> None:
    returncode = server.stop()
    assert server.process.poll() is not None, f"{server.name} is still running"
    assert returncode == server.process.returncode


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fake OpenAI-compatible server; yields its base URL, `http://127.0.0.1:PORT/v1`."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    server = ServerProcess.start(
        "fake-llm",
        [sys.executable, str(FAKE_LLM_SCRIPT), "--port", str(port)],
        env=os.environ,
        log_dir=tmp_path_factory.mktemp("fake-llm"),
    )
    try:
        server.wait_until_ready(f"{base_url}/models")
        yield base_url
    finally:
        _stop_checked(server)


def kelpie_env(llm_base_url: str, extra: Mapping[str, str]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SERVER_ENV_DROPPED and not key.startswith(SERVER_ENV_PREFIXES_DROPPED)
    }
    env["OPENAI_API_KEY"] = LLM_API_KEY
    env["OPENAI_BASE_URL"] = llm_base_url
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class KelpieLauncher:
    """Starts `kelpie serve` processes, each on its own port with its own data directory
    (and, on PostgreSQL, its own database), and stops them all at the end of the module."""

    def __init__(
        self,
        llm_base_url: str,
        tmp_path_factory: pytest.TempPathFactory,
        new_database: Callable[[], str] | None = None,
    ) -> None:
        self._llm_base_url = llm_base_url
        self._tmp_path_factory = tmp_path_factory
        self._new_database = new_database
        self._running: list[tuple[str, ServerProcess]] = []
        self.data_dirs: dict[str, Path] = {}
        # The database URL of each data directory, when the servers run on PostgreSQL.
        self.database_urls: dict[Path, str] = {}

    def start(
        self, extra_env: Mapping[str, str] | None = None, *, data_dir: Path | None = None
    ) -> str:
        """Starts a server and waits for its health check; returns `http://127.0.0.1:PORT`.
        With `data_dir`, the server uses that one (a restart of a stopped server)."""
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        root = self._tmp_path_factory.mktemp("kelpie")
        if data_dir is None:
            data_dir = root / "data"
            data_dir.mkdir()
        argv = [sys.executable, "-m", "kelpie", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--data-dir", str(data_dir)]
        extra = dict(extra_env or {})
        if self._new_database is not None and "KELPIE_DB_URL" not in extra:
            extra["KELPIE_DB_URL"] = self._database_url(data_dir)
        env = kelpie_env(self._llm_base_url, extra)
        server = ServerProcess.start("kelpie", argv, env=env, log_dir=root / "logs")
        try:
            server.wait_until_ready(f"{base_url}/v1/health")
        except BaseException:
            _stop_checked(server)
            raise
        self._running.append((base_url, server))
        KELPIE_SERVERS[base_url] = server
        self.data_dirs[base_url] = data_dir
        return base_url

    def _database_url(self, data_dir: Path) -> str:
        assert self._new_database is not None, "the servers run on SQLite"
        if data_dir not in self.database_urls:
            self.database_urls[data_dir] = self._new_database()
        return self.database_urls[data_dir]

    def database_args(self, data_dir: Path) -> list[str]:
        """The options that point a `kelpie` command at the database of the server on
        `data_dir` (made now if that server has not started yet)."""
        if self._new_database is None:
            return ["--data-dir", str(data_dir)]
        return ["--data-dir", str(data_dir), "--db", self._database_url(data_dir)]

    def stop(self, base_url: str) -> None:
        """Stops one server (gracefully); its data directory stays for a restart."""
        for entry in self._running:
            if entry[0] == base_url:
                self._running.remove(entry)
                KELPIE_SERVERS.pop(base_url, None)
                _stop_checked(entry[1])
                return
        raise AssertionError(f"no server runs at {base_url}")

    def stop_all(self) -> None:
        while self._running:
            base_url, server = self._running.pop()
            KELPIE_SERVERS.pop(base_url, None)
            _stop_checked(server)


def server_backend() -> str:
    """The database the suite's servers run on: `KELPIE_TEST_BACKEND` (sqlite, the default,
    or postgres: a fresh migrated database per server, from the session's PostgreSQL)."""
    backend = os.environ.get(TEST_BACKEND_VARIABLE, "sqlite")
    assert backend in TEST_BACKENDS, f"{TEST_BACKEND_VARIABLE} must be one of {TEST_BACKENDS}"
    return backend


@pytest.fixture(scope="session")
def server_databases(request: pytest.FixtureRequest) -> Callable[[], str] | None:
    """Makes a fresh database for each server when the suite runs on PostgreSQL: a copy of
    one migrated at the start (a copy takes milliseconds, migrating most of a second)."""
    if server_backend() != "postgres":
        return None
    from kelpie.storage import _pg_migrations

    postgres: LocalPostgres = request.getfixturevalue("postgres")
    template = "kelpie_servers_template"
    postgres.drop_database(template)
    _pg_migrations.apply(postgres.create_database(template))
    made = itertools.count(1)

    def new_database() -> str:
        return postgres.create_database(f"kelpie_server_{next(made)}", template=template)

    return new_database


@pytest.fixture(scope="module")
def kelpie_launcher(
    llm_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    server_databases: Callable[[], str] | None,
) -> Iterator[KelpieLauncher]:
    """Starts extra Kelpie servers, e.g. with a different environment; stopped per module."""
    launcher = KelpieLauncher(llm_server, tmp_path_factory, server_databases)
    try:
        yield launcher
    finally:
        launcher.stop_all()


@pytest.fixture(scope="module")
def kelpie_server(kelpie_launcher: KelpieLauncher) -> str:
    """A `kelpie serve` process with a fresh data directory; its URL, `http://127.0.0.1:PORT`."""
    return kelpie_launcher.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attaches what the Kelpie server wrote to stderr during a failed test to its report."""
    report = yield
    funcargs: dict[str, object] = getattr(item, "funcargs", {})
    servers = [
        KELPIE_SERVERS[value]
        for value in funcargs.values()
        if isinstance(value, str) and value in KELPIE_SERVERS
    ]
    if not servers:
        return report
    server = servers[0]
    if call.when == "setup":
        item.stash[SERVER_OUTPUT_MARK] = (server, server.stderr_size())
    elif report.failed and SERVER_OUTPUT_MARK in item.stash:
        marked_server, offset = item.stash[SERVER_OUTPUT_MARK]
        output = server.stderr_since(offset) if marked_server is server else ""
        if output:
            report.sections.append(("kelpie server stderr", output))
    return report


@pytest.fixture
def client(kelpie_server: str) -> Iterator[Letta]:
    """The official SDK pointed at the test server, with retries off so errors surface."""
    letta = Letta(
        base_url=kelpie_server,
        api_key=CLIENT_API_KEY,
        max_retries=0,
        timeout=CLIENT_TIMEOUT_S,
    )
    try:
        yield letta
    finally:
        letta.close()


@pytest.fixture
def http(kelpie_server: str) -> Iterator[httpx.Client]:
    """A raw client for what the SDK cannot express; it never follows redirects."""
    with httpx.Client(
        base_url=kelpie_server, follow_redirects=False, timeout=CLIENT_TIMEOUT_S
    ) as raw:
        yield raw


class LlmScript:
    """The fake LLM's queue of scripted answers and its log of the model requests it got
    (tests/fakes/llm_server.py documents the entry format). Shared by every test of one
    xdist worker: the `script` fixture clears it before each test."""

    def __init__(self, control: httpx.Client) -> None:
        self._control = control

    def enqueue(self, *entries: Mapping[str, object]) -> None:
        """Queues answers; each model request takes the next one (then "OK" forever)."""
        self._control.post("/_script", json=list(entries)).raise_for_status()

    def clear(self) -> None:
        """Forgets the queued answers and the recorded requests."""
        self._control.delete("/_script").raise_for_status()

    def requests(self) -> list[dict[str, object]]:
        """The bodies of the model requests received since the last clear, oldest first."""
        response = self._control.get("/_requests")
        response.raise_for_status()
        return [record["body"] for record in response.json()["requests"]]


@pytest.fixture
def script(llm_server: str) -> Iterator[LlmScript]:
    """The fake LLM's script, cleared for this test: enqueue exactly what the test needs."""
    with httpx.Client(base_url=llm_server.removesuffix("/v1"), timeout=CLIENT_TIMEOUT_S) as control:
        llm = LlmScript(control)
        llm.clear()
        yield llm


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL 16 with pgvector for the session (one per xdist worker, each on its own
    socket), run as an unprivileged user when the tests run as root; stopped at the end."""
    server = LocalPostgres.start()
    try:
        yield server
    finally:
        server.stop()

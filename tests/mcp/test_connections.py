"""McpConnections against real MCP servers:

- `mcp-server-time` and `mcp-server-git` (PyPI, installed in the venv by the test extras),
  over stdio;
- `@modelcontextprotocol/server-everything` (npm), over stdio and streamable HTTP.
  `scripts/install-mcp-servers` installs it into `.cache/mcp-servers` once per machine (with
  the Node.js 22 of `scripts/install-letta-code`); later sessions reuse that install. Its
  transport is its first argument (`stdio`, `sse`, `streamableHttp`); over HTTP it listens on
  `$PORT` and serves `/mcp`.

Each test runs its own event loop and client (`run`), which it closes at the end; server
processes are found among this process's children by their command lines. (The helpers live
here rather than in a `tests/mcp` package: a package named `mcp` would shadow the SDK.)"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

import psutil
import pytest

from kelpie.mcp import McpConnections, McpServerSpec, McpUnavailable

REPO_DIR: Final = Path(__file__).resolve().parents[2]
INSTALLER: Final = REPO_DIR / "scripts" / "install-mcp-servers"
VENV_BIN: Final = Path(sys.executable).parent
# A cold install downloads Node.js and the server from npm; after that it is reused.
INSTALL_TIMEOUT_S: Final = 600.0
READY_TIMEOUT_S: Final = 15.0
READY_POLL_INTERVAL_S: Final = 0.02
STOP_TIMEOUT_S: Final = 5.0
OUTPUT_QUOTE_CHARS_MAX: Final = 4000

# What each stdio server's process has in its command line (to find it with psutil).
TIME_SERVER_MARK: Final = "mcp-server-time"
EVERYTHING_SERVER_MARK: Final = "mcp-server-everything stdio"


def install_mcp_servers() -> Path:
    """Runs the installer; returns the directory holding `mcp-server-everything` and the
    `node` it runs on."""
    try:
        done = subprocess.run(
            [str(INSTALLER)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{INSTALLER} did not finish within {INSTALL_TIMEOUT_S} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"{INSTALLER} failed with exit code {done.returncode}\n"
            + done.stderr[-OUTPUT_QUOTE_CHARS_MAX:],
            pytrace=False,
        )
    bin_dir = Path(done.stdout.strip().splitlines()[-1])
    assert (bin_dir / "mcp-server-everything").exists(), f"no server in {bin_dir}"
    assert (bin_dir / "node").exists(), f"no node in {bin_dir}"
    return bin_dir


def time_server(key: str = "time") -> McpServerSpec:
    return McpServerSpec(
        key=key, name="time", transport="stdio", command=str(VENV_BIN / "mcp-server-time")
    )


def git_server(repository: Path, key: str = "git") -> McpServerSpec:
    return McpServerSpec(
        key=key,
        name="git",
        transport="stdio",
        command=str(VENV_BIN / "mcp-server-git"),
        args=("--repository", str(repository)),
    )


def everything_stdio_server(
    bin_dir: Path, key: str = "everything", env: dict[str, str] | None = None
) -> McpServerSpec:
    """server-everything over stdio, found on the PATH its spec gives it (its script runs
    `#!/usr/bin/env node`, so that PATH also picks the node)."""
    return McpServerSpec(
        key=key,
        name="everything",
        transport="stdio",
        command="mcp-server-everything",
        args=("stdio",),
        env={"PATH": f"{bin_dir}{os.pathsep}{os.defpath}", **(env or {})},
    )


def everything_http_server(url: str, key: str = "everything-http") -> McpServerSpec:
    return McpServerSpec(key=key, name="everything-http", transport="streamable_http", url=url)


def make_git_repository(root: Path) -> Path:
    """A git repository with one commit of one file, `README.md`."""
    repository = root / "repository"
    repository.mkdir()
    git_env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(root),
        "GIT_AUTHOR_NAME": "Kelpie Test",
        "GIT_AUTHOR_EMAIL": "test@kelpie.invalid",
        "GIT_COMMITTER_NAME": "Kelpie Test",
        "GIT_COMMITTER_EMAIL": "test@kelpie.invalid",
    }
    (repository / "README.md").write_text("hello\n")
    for argv in (["init", "-q", "-b", "main"], ["add", "README.md"], ["commit", "-qm", "first"]):
        subprocess.run(["git", *argv], cwd=repository, env=git_env, check=True)
    return repository


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def everything_over_http(bin_dir: Path) -> Iterator[str]:
    """server-everything over streamable HTTP on a free port; yields its MCP URL."""
    port = free_port()
    argv = [str(bin_dir / "mcp-server-everything"), "streamableHttp"]
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.defpath}", "PORT": str(port)}
    with serving_http(argv, env, port):
        yield f"http://127.0.0.1:{port}/mcp"


# A streamable HTTP server on the Python SDK's MCPServer, which (unlike server-everything)
# answers a request naming an unknown session with the 404 the protocol prescribes.
PYTHON_HTTP_SERVER: Final = """
import sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("python-http")


@server.tool()
def echo(message: str) -> str:
    \"\"\"Echoes the message.\"\"\"
    return "Echo: " + message


server.run(transport="streamable-http", port=int(sys.argv[1]))
"""


@contextmanager
def python_over_http(port: int) -> Iterator[str]:
    """PYTHON_HTTP_SERVER on `port`; yields its MCP URL."""
    argv = [sys.executable, "-c", PYTHON_HTTP_SERVER, str(port)]
    with serving_http(argv, {"PATH": os.environ.get("PATH", os.defpath)}, port):
        yield f"http://127.0.0.1:{port}/mcp"


@contextmanager
def serving_http(argv: list[str], env: dict[str, str], port: int) -> Iterator[None]:
    """Runs an HTTP server until the block ends, once it accepts connections on `port`."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_until_listening(process, port, output)
            yield
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, output: IO[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(READY_POLL_INTERVAL_S)
    output.seek(0)
    quoted = output.read()[-OUTPUT_QUOTE_CHARS_MAX:].decode(errors="replace")
    pytest.fail(f"{process.args!r} did not listen on port {port}\n{quoted}", pytrace=False)


def server_processes(mark: str) -> list[psutil.Process]:
    """This test process's live descendants whose command line contains `mark`."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if mark in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def server_pids(mark: str) -> set[int]:
    return {process.pid for process in server_processes(mark)}


SLOW_TOOL: Final = "trigger-long-running-operation"
# Long enough that a retried call would visibly finish; the tests never wait it out.
SLOW_TOOL_S: Final = 8.0
PROCESS_GONE_TIMEOUT_S: Final = 5.0
POLL_INTERVAL_S: Final = 0.02
POLLS_MAX: Final = int(PROCESS_GONE_TIMEOUT_S / POLL_INTERVAL_S)
# After a server process is gone, time for the loop to read the end of its output.
SETTLE_S: Final = 0.1


@pytest.fixture(scope="session")
def everything_bin() -> Path:
    """The directory holding the pinned `mcp-server-everything` and the `node` it runs on."""
    return install_mcp_servers()


@pytest.fixture(scope="module")
def everything_url(everything_bin: Path) -> Iterator[str]:
    """The MCP URL of a server-everything serving streamable HTTP."""
    with everything_over_http(everything_bin) as url:
        yield url


class FakeClock:
    """Seconds that move only when a test says so (idleness and back-off)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Scenario = Callable[[McpConnections], Awaitable[None]]


def run(scenario: Scenario, make_clients: Callable[[], McpConnections] = McpConnections) -> None:
    """Runs `scenario` with a fresh client on a fresh loop, and closes the client after."""

    async def main() -> None:
        clients = make_clients()
        try:
            await scenario(clients)
        finally:
            await clients.close()

    asyncio.run(main())


async def kill_when_started(mark: str, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    for process in server_processes(mark):
        process.kill()


def alive(pids: set[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.add(pid)
        except psutil.NoSuchProcess:
            continue
    return found


async def wait_gone(pids: set[int]) -> set[int]:
    """The pids still alive after waiting a bounded time for them to exit (polling, so the
    loop keeps running: closing a connection happens on it)."""
    for _ in range(POLLS_MAX):
        if not alive(pids):
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    return alive(pids)


class TestTalkingToRealServers:
    def test_time_server_over_stdio_lists_its_tools_and_answers_a_call(self) -> None:
        async def scenario(clients: McpConnections) -> None:
            tools = await clients.list_tools(time_server())
            result = await clients.call_tool(time_server(), "get_current_time", {"timezone": "UTC"})

            assert {tool.name for tool in tools} == {"get_current_time", "convert_time"}
            listed = {tool.name: tool for tool in tools}
            assert listed["get_current_time"].input_schema["type"] == "object"
            assert not result.is_error
            assert '"timezone": "UTC"' in result.text
            assert result.structured is not None
            assert result.structured["timezone"] == "UTC"

        run(scenario)

    def test_git_server_over_stdio_reports_on_its_repository(self, tmp_path: Path) -> None:
        repository = make_git_repository(tmp_path)

        async def scenario(clients: McpConnections) -> None:
            tools = await clients.list_tools(git_server(repository))
            log = await clients.call_tool(
                git_server(repository), "git_log", {"repo_path": str(repository)}
            )

            assert "git_status" in {tool.name for tool in tools}
            assert not log.is_error, log.text
            assert "first" in log.text

        run(scenario)

    def test_everything_server_over_stdio_echoes(self, everything_bin: Path) -> None:
        server = everything_stdio_server(everything_bin)

        async def scenario(clients: McpConnections) -> None:
            tools = await clients.list_tools(server)
            result = await clients.call_tool(server, "echo", {"message": "over stdio"})

            assert {"echo", "get-env", SLOW_TOOL} <= {tool.name for tool in tools}
            assert result.text == "Echo: over stdio"
            assert not result.is_error

        run(scenario)

    def test_everything_server_over_streamable_http_echoes(self, everything_url: str) -> None:
        server = everything_http_server(everything_url)

        async def scenario(clients: McpConnections) -> None:
            tools = await clients.list_tools(server)
            result = await clients.call_tool(server, "echo", {"message": "over http"})

            assert "echo" in {tool.name for tool in tools}
            assert result.text == "Echo: over http"

        run(scenario)

    def test_images_are_described_and_text_parts_joined(self, everything_url: str) -> None:
        server = everything_http_server(everything_url)

        async def scenario(clients: McpConnections) -> None:
            result = await clients.call_tool(server, "get-tiny-image", {})

            lines = result.text.splitlines()
            assert len(lines) == 3, result.text
            assert lines[1].startswith("[image: image/png, ")
            assert lines[1].endswith(" bytes]")

        run(scenario)


class TestKeptConnections:
    def test_calls_reuse_one_server_process(self) -> None:
        async def scenario(clients: McpConnections) -> None:
            await clients.list_tools(time_server())
            first = server_pids(TIME_SERVER_MARK)
            for _ in range(3):
                await clients.call_tool(time_server(), "get_current_time", {"timezone": "UTC"})

            assert len(first) == 1
            assert server_pids(TIME_SERVER_MARK) == first

        run(scenario)

    def test_concurrent_first_calls_make_one_connection(self, everything_bin: Path) -> None:
        server = everything_stdio_server(everything_bin)

        async def scenario(clients: McpConnections) -> None:
            results = await asyncio.gather(
                *(clients.call_tool(server, "echo", {"message": str(i)}) for i in range(8))
            )

            assert [result.text for result in results] == [f"Echo: {i}" for i in range(8)]
            assert len(server_pids(EVERYTHING_SERVER_MARK)) == 1

        run(scenario)

    def test_changed_spec_replaces_the_server_process(self, everything_bin: Path) -> None:
        before = everything_stdio_server(everything_bin)
        after = everything_stdio_server(everything_bin, env={"CHANGED": "yes"})

        async def scenario(clients: McpConnections) -> None:
            await clients.call_tool(before, "echo", {"message": "before"})
            old = server_pids(EVERYTHING_SERVER_MARK)
            await clients.call_tool(after, "echo", {"message": "after"})

            assert server_pids(EVERYTHING_SERVER_MARK).isdisjoint(old)
            assert alive(old) == set()

        run(scenario)


class TestToolFailures:
    def test_a_tool_error_comes_back_as_is_error(self) -> None:
        async def scenario(clients: McpConnections) -> None:
            result = await clients.call_tool(
                time_server(), "get_current_time", {"timezone": "Not/AZone"}
            )

            assert result.is_error
            assert "Not/AZone" in result.text

        run(scenario)

    def test_an_unknown_tool_comes_back_as_is_error(self, everything_url: str) -> None:
        async def scenario(clients: McpConnections) -> None:
            result = await clients.call_tool(
                everything_http_server(everything_url), "no-such-tool", {}
            )

            assert result.is_error
            assert "no-such-tool" in result.text

        run(scenario)

    def test_a_call_timeout_is_unavailable_and_the_next_call_works(
        self, everything_bin: Path
    ) -> None:
        server = everything_stdio_server(everything_bin)

        async def scenario(clients: McpConnections) -> None:
            await clients.list_tools(server)
            pids = server_pids(EVERYTHING_SERVER_MARK)
            with pytest.raises(McpUnavailable, match=r"did not answer .* within 0\.3 s"):
                await clients.call_tool(
                    server, SLOW_TOOL, {"duration": SLOW_TOOL_S, "steps": 2}, timeout_s=0.3
                )
            result = await clients.call_tool(server, "echo", {"message": "still here"})

            assert result.text == "Echo: still here"
            assert server_pids(EVERYTHING_SERVER_MARK) == pids

        run(scenario)


class TestDeadServers:
    def test_a_server_killed_between_calls_is_restarted_by_the_next_call(
        self, everything_bin: Path
    ) -> None:
        server = everything_stdio_server(everything_bin)

        async def scenario(clients: McpConnections) -> None:
            await clients.call_tool(server, "echo", {"message": "one"})
            (killed,) = server_processes(EVERYTHING_SERVER_MARK)
            killed.kill()
            assert await wait_gone({killed.pid}) == set()
            await asyncio.sleep(SETTLE_S)
            result = await clients.call_tool(server, "echo", {"message": "two"})

            assert result.text == "Echo: two"
            assert len(server_pids(EVERYTHING_SERVER_MARK) - {killed.pid}) == 1

        run(scenario)

    def test_a_server_killed_during_a_call_is_unavailable_and_not_retried(
        self, everything_bin: Path
    ) -> None:
        server = everything_stdio_server(everything_bin)

        async def scenario(clients: McpConnections) -> None:
            await clients.list_tools(server)
            killer = asyncio.create_task(kill_when_started(EVERYTHING_SERVER_MARK, 0.5))
            started = asyncio.get_running_loop().time()
            with pytest.raises(McpUnavailable, match="during the call to tool"):
                await clients.call_tool(server, SLOW_TOOL, {"duration": SLOW_TOOL_S, "steps": 2})
            await killer

            # A retry would have started a server and waited out the slow tool.
            assert asyncio.get_running_loop().time() - started < SLOW_TOOL_S / 2
            assert server_pids(EVERYTHING_SERVER_MARK) == set()

        run(scenario)

    def test_an_http_server_that_forgot_the_session_is_reconnected_to(self) -> None:
        port = free_port()
        server = McpServerSpec(
            key="python-http",
            name="python-http",
            transport="streamable_http",
            url=f"http://127.0.0.1:{port}/mcp",
        )

        async def scenario(clients: McpConnections) -> None:
            with python_over_http(port):
                await clients.call_tool(server, "echo", {"message": "one"})
            with python_over_http(port):
                result = await clients.call_tool(server, "echo", {"message": "two"})

            assert result.text == "Echo: two"
            assert not result.is_error

        run(scenario)

    def test_a_quiet_connection_is_pinged_and_replaced_when_it_does_not_answer(
        self, everything_bin: Path
    ) -> None:
        server = everything_stdio_server(everything_bin)
        clock = FakeClock()

        async def scenario(clients: McpConnections) -> None:
            await clients.call_tool(server, "echo", {"message": "one"})
            (stopped,) = server_processes(EVERYTHING_SERVER_MARK)
            stopped.send_signal(signal.SIGSTOP)
            try:
                clock.now += 31.0
                result = await clients.call_tool(server, "echo", {"message": "two"})
            finally:
                stopped.send_signal(signal.SIGCONT)

            assert result.text == "Echo: two"
            assert len(server_pids(EVERYTHING_SERVER_MARK) - {stopped.pid}) == 1
            assert await wait_gone({stopped.pid}) == set()

        run(scenario, lambda: McpConnections(clock=clock, ping_timeout_s=0.3))


class TestUnavailableServers:
    def test_a_missing_command_is_unavailable_naming_it(self) -> None:
        server = McpServerSpec(
            key="missing", name="missing", transport="stdio", command="kelpie-no-such-server"
        )

        async def scenario(clients: McpConnections) -> None:
            with pytest.raises(McpUnavailable, match="'kelpie-no-such-server' was not found"):
                await clients.list_tools(server)

        run(scenario)

    def test_a_server_failing_at_start_quotes_its_stderr(self) -> None:
        server = McpServerSpec(
            key="fails",
            name="fails",
            transport="stdio",
            command=sys.executable,
            args=("-c", "import sys; sys.stderr.write('no config file here\\n'); sys.exit(3)"),
        )

        async def scenario(clients: McpConnections) -> None:
            with pytest.raises(McpUnavailable, match="exited while starting") as caught:
                await clients.list_tools(server)

            assert "no config file here" in str(caught.value)

        run(scenario)

    def test_an_unreachable_url_is_unavailable(self) -> None:
        url = f"http://127.0.0.1:{free_port()}/mcp"
        server = McpServerSpec(key="gone", name="gone", transport="streamable_http", url=url)

        async def scenario(clients: McpConnections) -> None:
            with pytest.raises(McpUnavailable, match=f"at {url} could not be reached"):
                await clients.call_tool(server, "echo", {"message": "anyone?"})

        run(scenario)

    def test_an_unauthorized_url_is_unavailable_saying_so(self) -> None:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        async def scenario(clients: McpConnections) -> None:
            listener = await asyncio.start_server(refuse, "127.0.0.1", 0)
            port = listener.sockets[0].getsockname()[1]
            server = McpServerSpec(
                key="locked",
                name="locked",
                transport="streamable_http",
                url=f"http://127.0.0.1:{port}/mcp",
                headers={"Authorization": "Bearer wrong"},
            )
            async with listener:
                with pytest.raises(McpUnavailable, match="HTTP 401"):
                    await clients.list_tools(server)

        run(scenario)

    def test_failed_connects_back_off_and_fail_fast_meanwhile(self) -> None:
        server = McpServerSpec(
            key="missing", name="missing", transport="stdio", command="kelpie-no-such-server"
        )
        clock = FakeClock()

        async def scenario(clients: McpConnections) -> None:
            messages = []
            for advance_s in (0.0, 0.0, 0.0, 0.5, 0.0):
                clock.now += advance_s
                with pytest.raises(McpUnavailable) as caught:
                    await clients.list_tools(server)
                messages.append(str(caught.value))

            # First retry at once; then 0.5 s of fast failures; then 1 s.
            assert "tries again" not in messages[0]
            assert "tries again" not in messages[1]
            assert "tries again in 0.5 s" in messages[2]
            assert "tries again" not in messages[3]
            assert "tries again in 1.0 s" in messages[4]

        run(scenario, lambda: McpConnections(clock=clock))


class TestClosing:
    def test_forget_stops_the_server_process(self, everything_bin: Path) -> None:
        server = everything_stdio_server(everything_bin)

        async def scenario(clients: McpConnections) -> None:
            await clients.list_tools(server)
            pids = server_pids(EVERYTHING_SERVER_MARK)
            await clients.forget(server.key)

            assert len(pids) == 1
            assert alive(pids) == set()

        run(scenario)

    def test_close_stops_every_server_process(self, everything_bin: Path) -> None:
        servers = [everything_stdio_server(everything_bin, key=f"e{i}") for i in range(2)]
        pids: set[int] = set()

        async def scenario(clients: McpConnections) -> None:
            for server in servers:
                await clients.list_tools(server)
            await clients.list_tools(time_server())
            pids.update(server_pids(EVERYTHING_SERVER_MARK) | server_pids(TIME_SERVER_MARK))

        run(scenario)

        # close() returned: the processes are gone already, not merely on their way out.
        assert len(pids) == 3
        assert alive(pids) == set()


class TestEnvironment:
    def test_a_stdio_server_sees_its_spec_env_and_none_of_kelpies(
        self, everything_bin: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KELPIE_TEST_SECRET_API_KEY", "sk-must-not-leak")
        server = everything_stdio_server(everything_bin, env={"SERVER_SETTING": "given"})

        async def scenario(clients: McpConnections) -> None:
            result = await clients.call_tool(server, "get-env", {})

            assert '"SERVER_SETTING": "given"' in result.text
            assert "KELPIE_TEST_SECRET_API_KEY" not in result.text
            assert "sk-must-not-leak" not in result.text

        run(scenario)

"""stdio MCP servers confined by the sandbox: `McpConnections` with the production launcher
(`ConfinedStdioLauncher` over `ProgramSandbox` over `ProcessSandbox`), against real servers
and real processes.

- `mcp-server-time` and `mcp-server-git` (PyPI, in the venv) and server-everything (npm, on
  the Node.js of `scripts/install-mcp-servers`) list their tools and answer calls confined;
  git works on a repository granted read-write (and cannot see it without the grant).
- Escape probes: a small stdio server written here on the SDK's `MCPServer`, run with the
  venv's Python, whose tools try to read /etc/shadow, the data dir and a host /tmp file,
  write outside /tmp, open a TCP connection to the host with the network off, list the
  host's processes, and report its uid and privileges. Each attempt fails; beside each,
  an attempt that must work (read a bound file, write /tmp, connect with the network on)
  shows the probe itself works.
- The uid and cgroups a server held are given back when it is stopped, and when it is
  killed (the next call reconnects with a fresh sandbox).
- A host that cannot confine, and a granted path outside the allowed directories, make
  the server unavailable saying why, at connect and at call time.

The data dir sits in the host's /tmp, 0755, with a 0644 secret file: only the confinement
keeps a server from it. Each test runs its own sandbox and client on its own event loop.
(The helpers live here rather than in a `tests/mcp` package: a package named `mcp` would
shadow the SDK.)"""

import asyncio
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import psutil
import pytest

from kelpie.cli._mcp_stdio import ConfinedStdioLauncher
from kelpie.mcp import McpConnections, McpServerSpec, McpUnavailable
from kelpie.sandbox import ProcessSandbox, ProgramSandbox

REPO_DIR: Final = Path(__file__).resolve().parents[2]
INSTALLER: Final = REPO_DIR / "scripts" / "install-mcp-servers"
INSTALL_TIMEOUT_S: Final = 600.0
VENV_BIN: Final = Path(sys.executable).parent
MARK_VARIABLE: Final = "KELPIE_TEST_MCP_MARK"
POLL_INTERVAL_S: Final = 0.02
POLLS_MAX: Final = 250

PROBE_SERVER: Final = '''
import json, os, socket
from mcp.server.mcpserver import MCPServer

server = MCPServer("probe")


def attempt(action):
    try:
        return json.dumps({"ok": True, "value": action()})
    except Exception as error:
        return json.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"})


@server.tool()
def read_file(path: str) -> str:
    """Reads a file; answers how many bytes it read."""
    def read():
        with open(path, "rb") as file:
            return len(file.read())
    return attempt(read)


@server.tool()
def list_dir(path: str) -> str:
    """Lists a directory."""
    return attempt(lambda: sorted(os.listdir(path)))


@server.tool()
def write_file(path: str) -> str:
    """Creates a new file."""
    def write():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"probe")
        os.close(fd)
        return path
    return attempt(write)


@server.tool()
def connect(port: int) -> str:
    """Opens a TCP connection to 127.0.0.1:port."""
    def go():
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            return "connected"
    return attempt(go)


@server.tool()
def processes() -> str:
    """The pids /proc lists, with their command lines."""
    def listing():
        seen = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as file:
                        seen[name] = file.read().replace(b"\\0", b" ").decode(errors="replace")
                except OSError as error:
                    seen[name] = str(error)
        return seen
    return attempt(listing)


@server.tool()
def identity() -> str:
    """Who the server runs as, and its privileges."""
    def who():
        status = {}
        with open("/proc/self/status") as file:
            for line in file:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        return {
            "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
            "seccomp": status["Seccomp"], "no_new_privs": status["NoNewPrivs"],
            "cap_eff": status["CapEff"], "home": os.environ.get("HOME"),
        }
    return attempt(who)


server.run()
'''


@dataclasses.dataclass
class Confined:
    clients: McpConnections
    programs: ProgramSandbox
    data_dir: Path
    secret: str


Scenario = Callable[[Confined], Awaitable[None]]


def run_confined(
    scenario: Scenario,
    *,
    allowed: Sequence[Path] = (),
    bwrap_path: Path | None = None,
) -> None:
    """Runs `scenario` with a fresh sandbox and client on a fresh loop; closes them after.
    The data dir (protected) lives in the host's /tmp, readable by anyone but for the
    confinement."""
    secret = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="kelpie-mcp-confined-"))
    root.chmod(0o755)
    data_dir = root / "data"
    data_dir.mkdir(mode=0o755)
    (data_dir / "kelpie.db").write_text(secret)
    (data_dir / "kelpie.db").chmod(0o644)

    async def main() -> None:
        sandbox = ProcessSandbox(root_dir=data_dir / "sandbox", pool_size=0, bwrap_path=bwrap_path)
        await sandbox.start()
        programs = ProgramSandbox(
            sandbox, state_dir=data_dir / "sandbox" / "programs", protected=[data_dir]
        )
        launcher = ConfinedStdioLauncher(programs, allowed_paths=allowed)
        clients = McpConnections(stdio_launcher=launcher)
        try:
            await scenario(Confined(clients, programs, data_dir, secret))
        finally:
            await clients.close()
            assert programs.live == 0, "a closed client left a server unreleased"
            await programs.close()
            await sandbox.close()

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def time_server(mark: str) -> McpServerSpec:
    return McpServerSpec(
        key=mark,
        name="time",
        transport="stdio",
        command=str(VENV_BIN / "mcp-server-time"),
        args=("--local-timezone", "UTC"),
        env={MARK_VARIABLE: mark},
    )


def probe_server(mark: str, *, network: bool = False) -> McpServerSpec:
    return McpServerSpec(
        key=mark,
        name="probe",
        transport="stdio",
        command=sys.executable,
        args=("-c", PROBE_SERVER),
        env={MARK_VARIABLE: mark},
        network=network,
    )


def git_server(mark: str, repository: Path, *, granted: bool) -> McpServerSpec:
    return McpServerSpec(
        key=mark,
        name="git",
        transport="stdio",
        command=str(VENV_BIN / "mcp-server-git"),
        args=("--repository", str(repository)),
        env={MARK_VARIABLE: mark},
        read_write_paths=(str(repository),) if granted else (),
    )


def marked(mark: str) -> list[psutil.Process]:
    """This test process's live descendants whose environment carries `mark` (the server
    itself: the launch chain carries it only inside one JSON-encoded variable)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(MARK_VARIABLE) == mark:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def the_server(mark: str) -> psutil.Process:
    found = marked(mark)
    assert len(found) == 1, f"expected one server process marked {mark}: {found}"
    return found[0]


def cgroup_dirs(pid: int) -> list[Path]:
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in ("memory", "pids"):
            if controller in controllers.split(","):
                dirs.append(Path("/sys/fs/cgroup") / controller / path.lstrip("/"))
    return dirs


def status_field(pid: int, key: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return value.strip()
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def processes_of(uid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.uids().real == uid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


async def eventually(check: Callable[[], bool]) -> bool:
    for _ in range(POLLS_MAX):
        if check():
            return True
        await asyncio.sleep(POLL_INTERVAL_S)
    return check()


async def probe(confined: Confined, server: McpServerSpec, tool: str, **args: Any) -> Any:
    result = await confined.clients.call_tool(server, tool, args)
    assert not result.is_error, result.text
    return json.loads(result.text)


def make_git_repository(root: Path) -> Path:
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


@pytest.fixture(scope="session")
def everything_bin() -> Path:
    """The directory holding the pinned `mcp-server-everything` and the `node` it runs on."""
    done = subprocess.run(
        [str(INSTALLER)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    bin_dir = Path(done.stdout.strip().splitlines()[-1])
    assert (bin_dir / "mcp-server-everything").exists(), f"no server in {bin_dir}"
    return bin_dir


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on the host's 127.0.0.1 (non-blocking accept)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        yield server


def accepted(server: socket.socket) -> bool:
    try:
        connection, _ = server.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


class TestRealServersConfined:
    def test_time_server_answers_confined_as_a_uid_of_its_own(self) -> None:
        mark = unique("time")

        async def scenario(confined: Confined) -> None:
            tools = await confined.clients.list_tools(time_server(mark))
            result = await confined.clients.call_tool(
                time_server(mark), "get_current_time", {"timezone": "UTC"}
            )
            server = the_server(mark)

            assert {tool.name for tool in tools} == {"get_current_time", "convert_time"}
            assert not result.is_error, result.text
            assert '"timezone": "UTC"' in result.text
            assert server.uids().real != 0
            assert confined.programs.uids_in_use() == {server.uids().real}

        run_confined(scenario)

    def test_git_server_works_on_a_repository_granted_read_write(self, tmp_path: Path) -> None:
        repository = make_git_repository(tmp_path)
        mark = unique("git")
        server = git_server(mark, repository, granted=True)

        async def scenario(confined: Confined) -> None:
            status = await confined.clients.call_tool(
                server, "git_status", {"repo_path": str(repository)}
            )
            branch = await confined.clients.call_tool(
                server, "git_create_branch", {"repo_path": str(repository), "branch_name": "kelp"}
            )

            assert not status.is_error, status.text
            assert "On branch main" in status.text
            assert not branch.is_error, branch.text
            # The server and the `git cat-file` it keeps: all of the sandbox's uid.
            uids = {process.uids().real for process in marked(mark)}
            assert uids == confined.programs.uids_in_use()
            assert 0 not in uids

        run_confined(scenario, allowed=[tmp_path])

        # The branch was written on the host, owned by the repository's owner (root).
        ref = repository / ".git" / "refs" / "heads" / "kelp"
        assert ref.exists()
        assert ref.stat().st_uid == repository.stat().st_uid

    def test_git_server_cannot_see_a_repository_it_was_not_granted(self, tmp_path: Path) -> None:
        repository = make_git_repository(tmp_path)
        server = git_server(unique("git"), repository, granted=False)

        async def scenario(confined: Confined) -> None:
            with pytest.raises(McpUnavailable, match="exited while starting") as caught:
                await confined.clients.list_tools(server)

            assert "does not exist" in str(caught.value)

        run_confined(scenario, allowed=[tmp_path])

    def test_everything_server_runs_on_node_confined(self, everything_bin: Path) -> None:
        mark = unique("everything")
        server = McpServerSpec(
            key=mark,
            name="everything",
            transport="stdio",
            command="mcp-server-everything",
            args=("stdio",),
            env={"PATH": f"{everything_bin}{os.pathsep}{os.defpath}", MARK_VARIABLE: mark},
        )

        async def scenario(confined: Confined) -> None:
            tools = await confined.clients.list_tools(server)
            echo = await confined.clients.call_tool(server, "echo", {"message": "confined"})
            environment = await confined.clients.call_tool(server, "get-env", {})
            process = the_server(mark)

            assert {"echo", "get-env"} <= {tool.name for tool in tools}
            assert echo.text == "Echo: confined"
            assert f'"{MARK_VARIABLE}": "{mark}"' in environment.text
            assert '"HOME": "/tmp"' in environment.text
            assert "KELPIE_PROGRAM_ENV" not in environment.text
            assert process.uids().real != 0
            assert Path(process.exe()).name == "node"
            # Node.js runs under the seccomp filter (clone3 and io_uring have fallbacks).
            assert status_field(process.pid, "Seccomp") == "2"

        run_confined(scenario)


class TestEscapes:
    def test_reading_outside_fails(self) -> None:
        mark = unique("probe")
        server = probe_server(mark)
        host_tmp = Path(tempfile.mkdtemp(prefix="kelpie-host-tmp-"))
        host_tmp.chmod(0o755)
        (host_tmp / "secret.txt").write_text("host file")
        (host_tmp / "secret.txt").chmod(0o644)

        async def scenario(confined: Confined) -> None:
            shadow = await probe(confined, server, "read_file", path="/etc/shadow")
            database = await probe(
                confined, server, "read_file", path=str(confined.data_dir / "kelpie.db")
            )
            listing = await probe(confined, server, "list_dir", path=str(confined.data_dir))
            other = await probe(confined, server, "read_file", path=str(host_tmp / "secret.txt"))
            bound = await probe(confined, server, "read_file", path="/etc/hosts")

            assert not shadow["ok"], shadow
            assert not database["ok"], database
            assert not listing["ok"], listing
            assert not other["ok"], other
            assert bound["ok"], bound  # the probe reads what the sandbox shows

        try:
            run_confined(scenario)
        finally:
            shutil.rmtree(host_tmp)

    def test_writing_outside_tmp_fails(self) -> None:
        mark = unique("probe")
        server = probe_server(mark)
        name = unique("kelpie-probe")
        venv = Path(sys.prefix)
        outside = [
            f"/{name}", f"/usr/{name}", f"/etc/{name}", f"/var/{name}",
            f"/opt/kelpie-sandbox/{name}", str(venv / name), str(REPO_DIR / name),
        ]  # fmt: skip
        in_data_dir: list[str] = []

        async def scenario(confined: Confined) -> None:
            in_data_dir.append(str(confined.data_dir / name))
            written = {
                path: await probe(confined, server, "write_file", path=path)
                for path in [*outside, *in_data_dir]
            }
            scratch = await probe(confined, server, "write_file", path=f"/tmp/{name}")

            # A checkout under /tmp (a CI clone) lies in the server's own /tmp, where a write
            # may land; the host-side check below shows it never reaches the host.
            landed = [p for p, seen in written.items() if seen["ok"] and not p.startswith("/tmp/")]
            assert landed == [], written
            assert scratch["ok"], scratch
            assert in_data_dir[0] not in {entry.path for entry in os.scandir(confined.data_dir)}

        run_confined(scenario)

        assert [path for path in outside if os.path.exists(path)] == []
        assert not Path(f"/tmp/{name}").exists()  # its /tmp is its own

    def test_the_network_is_off_unless_the_server_opts_in(self, listener: socket.socket) -> None:
        port = listener.getsockname()[1]
        off = probe_server(unique("probe"))
        on = probe_server(unique("probe"), network=True)

        async def scenario(confined: Confined) -> None:
            refused = await probe(confined, off, "connect", port=port)
            nothing = accepted(listener)
            allowed = await probe(confined, on, "connect", port=port)

            assert not refused["ok"], refused
            assert not nothing, "the host's listener accepted a connection with network off"
            assert allowed["ok"], allowed
            assert await eventually(lambda: accepted(listener))

        run_confined(scenario)

    def test_only_its_own_processes_are_visible(self) -> None:
        mark = unique("probe")
        server = probe_server(mark)

        async def scenario(confined: Confined) -> None:
            seen = await probe(confined, server, "processes")

            assert seen["ok"], seen
            listed = seen["value"]
            assert 1 <= len(listed) <= 3, listed
            assert not [cmd for cmd in listed.values() if "pytest" in cmd], listed
            assert str(os.getpid()) not in listed or "pytest" not in listed[str(os.getpid())]

        run_confined(scenario)

    def test_it_runs_unprivileged_as_a_uid_of_its_own(self) -> None:
        mark = unique("probe")
        server = probe_server(mark)

        async def scenario(confined: Confined) -> None:
            seen = await probe(confined, server, "identity")

            assert seen["ok"], seen
            who = seen["value"]
            assert who["uid"] != 0
            assert who["uid"] == who["euid"] == who["gid"] == the_server(mark).uids().real
            assert confined.programs.uids_in_use() == {who["uid"]}
            assert (who["seccomp"], who["no_new_privs"]) == ("2", "1")
            assert int(who["cap_eff"], 16) == 0
            assert who["home"] == "/tmp"

        run_confined(scenario)


class TestRelease:
    def test_a_stopped_server_gives_back_its_uid_and_cgroups(self) -> None:
        mark = unique("probe")
        server = probe_server(mark)

        async def scenario(confined: Confined) -> None:
            await confined.clients.list_tools(server)
            process = the_server(mark)
            uid = process.uids().real
            dirs = cgroup_dirs(process.pid)
            assert confined.programs.live == 1
            assert len(dirs) == 2
            assert all(d.is_dir() for d in dirs)

            await confined.clients.forget(server.key)

            assert confined.programs.live == 0
            assert confined.programs.uids_in_use() == set()
            assert not any(d.exists() for d in dirs), dirs
            assert processes_of(uid) == []

        run_confined(scenario)

    def test_a_killed_server_is_released_and_the_next_call_reconnects(self) -> None:
        mark = unique("probe")
        server = probe_server(mark)

        async def scenario(confined: Confined) -> None:
            first = await probe(confined, server, "identity")
            killed = the_server(mark)
            old_uid = killed.uids().real
            dirs = cgroup_dirs(killed.pid)
            killed.send_signal(signal.SIGKILL)
            assert await eventually(lambda: not marked(mark))
            # The connection notices the end of the stream and releases the sandbox.
            assert await eventually(lambda: confined.programs.live == 0)
            assert not any(d.exists() for d in dirs), dirs

            second = await probe(confined, server, "identity")

            assert first["value"]["uid"] == old_uid
            assert second["ok"], second
            assert confined.programs.live == 1
            assert old_uid not in confined.programs.uids_in_use()
            assert processes_of(old_uid) == []
            assert the_server(mark).pid != killed.pid

        run_confined(scenario)


class TestRefusals:
    def test_a_host_that_cannot_confine_refuses_stdio_servers(self, tmp_path: Path) -> None:
        server = time_server(unique("time"))

        async def scenario(confined: Confined) -> None:
            with pytest.raises(McpUnavailable) as listing:
                await confined.clients.list_tools(server)
            with pytest.raises(McpUnavailable) as calling:
                await confined.clients.call_tool(server, "get_current_time", {"timezone": "UTC"})

            for caught in (listing, calling):
                text = str(caught.value)
                assert "'time' was not started: it cannot run confined" in text, text
                assert "bubblewrap" in text
                assert "KELPIE_MCP_STDIO_UNCONFINED=1" in text
            assert marked(server.key) == []

        run_confined(scenario, bwrap_path=tmp_path / "no-bwrap")

    def test_a_path_outside_the_allowed_directories_is_refused(self, tmp_path: Path) -> None:
        repository = make_git_repository(tmp_path)
        server = git_server(unique("git"), repository, granted=True)

        async def scenario(confined: Confined) -> None:
            with pytest.raises(McpUnavailable, match="KELPIE_MCP_STDIO_PATHS") as caught:
                await confined.clients.list_tools(server)

            assert str(repository) in str(caught.value)
            assert marked(server.key) == []

        run_confined(scenario, allowed=[tmp_path / "elsewhere"])

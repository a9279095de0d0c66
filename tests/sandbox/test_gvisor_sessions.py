"""GvisorSessions on the real gVisor (`runsc`): an agent's Python session keeps its state
between executions, calls the host's tools, works in the agent's workspace, pauses to a
checkpoint image and resumes from it (also in a new instance: a server restart), is
discarded, killed on a timeout or crash and replaced by a fresh one; and code inside cannot
see or reach the host. Without runsc these tests fail: run scripts/bootstrap."""

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from kelpie.sandbox import (
    GvisorSessions,
    HostCallAnswer,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
    ToolStub,
    Workspaces,
)
from kelpie.sandbox._gvisor import find_runsc
from kelpie.sandbox._types import CodeSessions

AGENT: Final = "agent-00000000-0000-4000-8000-0000000000c1"
STUBS: Final = (
    ToolStub(name="add_note", parameters=("text",)),
    ToolStub(name="lookup", parameters=("key",)),
)


class Host:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        self.calls.append((name, arguments))
        if name == "lookup" and arguments.get("key") is None:
            return HostCallAnswer(False, "lookup needs a key")
        if name == "lookup":
            return HostCallAnswer(True, {"key": arguments["key"], "rows": [1, 2, 3]})
        return HostCallAnswer(True, len(self.calls))


class Sessions:
    """One GvisorSessions on an event loop of the module's own."""

    def __init__(self, runner: asyncio.Runner, root_dir: Path) -> None:
        self.runner = runner
        self.root_dir = root_dir
        self.workspaces = Workspaces(root_dir / "workspaces")
        self.sessions = self.open()

    def open(self) -> GvisorSessions:
        sessions = GvisorSessions(root_dir=self.root_dir / "sessions", workspaces=self.workspaces)
        self.runner.run(sessions.start())
        self.runner.run(sessions.ready())
        assert sessions.unavailable_reason is None, sessions.unavailable_reason
        return sessions

    def code(
        self,
        source: str,
        agent_id: str = AGENT,
        host: Host | None = None,
        *,
        sessions: GvisorSessions | None = None,
        **job: Any,
    ) -> ToolJobResult:
        request = ToolJob(
            source_code=source, function_name=None, tools=STUBS if host else (), **job
        )
        target = self.sessions if sessions is None else sessions
        return self.runner.run(target.run(agent_id, request, host))

    def value(self, source: str, agent_id: str = AGENT) -> Any:
        result = self.code(source, agent_id)
        assert result.status == "success", result
        return result.func_return


@pytest.fixture(scope="module")
def gv() -> Iterator[Sessions]:
    if find_runsc() is None:
        pytest.fail(
            "gVisor (runsc) is not installed: run scripts/bootstrap (it installs the Debian "
            "package runsc)"
        )
    root_dir = Path(tempfile.mkdtemp(prefix="kelpie-gvisor-test-"))
    try:
        with asyncio.Runner() as runner:
            sessions = Sessions(runner, root_dir)
            try:
                yield sessions
            finally:
                runner.run(sessions.sessions.close())
    finally:
        shutil.rmtree(root_dir, ignore_errors=True)


def _fresh_agent(gv: Sessions, name: str) -> str:
    agent_id = f"agent-{name}"
    gv.runner.run(gv.sessions.discard(agent_id))
    return agent_id


def _processes_naming(text: str) -> list[int]:
    """Host processes whose command line mentions `text` (a container id)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if text.encode() in cmdline:
                found.append(int(entry))
    return found


def test_state_persists_across_runs(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "state")
    first = gv.code("x = 1\nimport json\nlog = open('/tmp/log.txt', 'w')\nprint('set')", agent)
    assert first.status == "success", first
    assert first.stdout == "set\n"
    assert gv.value("x + 1", agent) == 2
    assert gv.value("log.write('kept'); log.flush(); json.dumps({'a': x})", agent) == '{"a": 1}'
    assert gv.value("open('/tmp/log.txt').read()", agent) == "kept"


def test_output_is_per_execution_and_includes_subprocesses(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "output")
    source = (
        "import subprocess, sys\n"
        "print('from python')\n"
        "subprocess.run(['echo', 'from a subprocess'], check=True)\n"
        "print('to stderr', file=sys.stderr)\n"
        "'done'"
    )
    result = gv.code(source, agent)
    assert result.status == "success", result
    assert result.stdout == "from python\nfrom a subprocess\n"
    assert result.stderr == "to stderr\n"
    again = gv.code("print('only this')", agent)
    assert again.stdout == "only this\n"
    assert again.stderr == ""


def test_an_exception_is_an_error_with_its_traceback_and_the_session_lives_on(
    gv: Sessions,
) -> None:
    agent = _fresh_agent(gv, "raises")
    result = gv.code("y = 5\nraise ValueError('bad kelp')", agent)
    assert result.status == "error"
    assert result.error == "ValueError: bad kelp"
    assert result.traceback is not None
    assert "line 2" in result.traceback
    assert gv.value("y", agent) == 5


def test_tool_calls_reach_the_host_and_answers_come_back(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "tools")
    host = Host()
    source = (
        "counts = [add_note(f'note {i}') for i in range(3)]\n"
        "import kelpie_tools\n"
        "rows = kelpie_tools.lookup(key='kelp')['rows']\n"
        "try:\n"
        "    lookup(key=None)\n"
        "except kelpie_tools.ToolError as error:\n"
        "    print('tool error:', error)\n"
        "sum(rows) + counts[-1]"
    )
    result = gv.code(source, agent, host)
    assert result.status == "success", result
    assert result.func_return == 9
    assert result.stdout == "tool error: lookup needs a key\n"
    assert host.calls[:3] == [("add_note", {"text": f"note {i}"}) for i in range(3)]
    assert host.calls[3] == ("lookup", {"key": "kelp"})
    # A later run without tools does not keep the earlier stubs.
    later = gv.code("'add_note' in globals()", agent)
    assert later.func_return is False


def test_the_workspace_is_the_working_directory_and_persists(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "workspace")
    source = "import os\nopen('notes.txt', 'w').write('kelp')\n[os.getcwd(), os.getuid()]"
    cwd, uid = gv.value(source, agent)
    assert cwd == "/workspace"
    assert uid != 0
    on_host = gv.workspaces.directory(agent) / "notes.txt"
    assert on_host.read_text() == "kelp"
    (gv.workspaces.directory(agent) / "from_host.txt").write_text("hello")
    both = "open('from_host.txt').read() + open('/workspace/notes.txt').read()"
    assert gv.value(both, agent) == "hellokelp"


def test_pause_and_resume_keep_the_session(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "pause")
    gv.code("secret = 'kelp-42'\nblob = bytearray(10 * 1024 * 1024)\nblob[-1] = 7", agent)
    container = gv.sessions.container_id(agent)
    assert _processes_naming(container), "the running session has processes"
    assert gv.runner.run(gv.sessions.pause_idle(0.0)) >= 1
    assert gv.sessions.image_path(agent).is_file()
    assert not gv.sessions.is_running(agent)
    assert _processes_naming(container) == []
    assert gv.value("[secret, len(blob), blob[-1]]", agent) == ["kelp-42", 10 * 1024 * 1024, 7]
    assert gv.sessions.is_running(agent)
    assert not gv.sessions.image_path(agent).exists(), "a running session has no image"


def test_pause_idle_leaves_recent_sessions_running(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "busy")
    gv.code("z = 3", agent)
    assert gv.runner.run(gv.sessions.pause_idle(3600.0)) == 0
    assert gv.sessions.is_running(agent)


def test_a_new_instance_resumes_a_paused_session(gv: Sessions) -> None:
    """The server restart: close() pauses, a new instance on the same root_dir resumes."""
    agent = _fresh_agent(gv, "restart")
    old = gv.open()
    try:
        source = "import math\nkept = {'pi': math.pi}\nhandle = open('kept.txt', 'w')"
        assert gv.code(source, agent, sessions=old).status == "success"
    finally:
        gv.runner.run(old.close())
    assert old.image_path(agent).is_file()
    assert _processes_naming(old.container_id(agent)) == []
    new = gv.open()
    try:
        source = "handle.write('x'); handle.flush()\n[kept['pi'], handle.closed]"
        result = gv.code(source, agent, sessions=new)
        assert result.status == "success", result
        assert result.func_return == [3.141592653589793, False]
        assert (gv.workspaces.directory(agent) / "kept.txt").read_text() == "x"
    finally:
        gv.runner.run(new.discard(agent))
        gv.runner.run(new.close())


def test_an_image_that_cannot_be_restored_gives_a_fresh_session_and_says_so(
    gv: Sessions,
) -> None:
    agent = _fresh_agent(gv, "broken-image")
    gv.code("lost = 1", agent)
    assert gv.runner.run(gv.sessions.pause(agent))
    image = gv.sessions.image_path(agent)
    data = bytearray(image.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)
    image.write_bytes(bytes(data))
    result = gv.code("'lost' in globals()", agent)
    assert result.status == "success", result
    assert result.func_return is False
    assert "the paused session could not be restored" in result.stderr
    assert "the session was lost and restarted" in result.stderr
    assert not image.exists()
    assert gv.value("1 + 1", agent) == 2


def test_discard_forgets_the_state(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "discard")
    gv.code("forgotten = 1", agent)
    gv.runner.run(gv.sessions.pause(agent))
    assert gv.sessions.image_path(agent).is_file()
    gv.runner.run(gv.sessions.discard(agent))
    assert not gv.sessions.image_path(agent).exists()
    result = gv.code("forgotten", agent)
    assert result.status == "error"
    assert result.error == "NameError: name 'forgotten' is not defined"


def test_a_timeout_kills_the_session_and_the_next_run_starts_fresh(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "timeout")
    gv.code("before = 1", agent)
    started = time.monotonic()
    result = gv.code("import time\ntime.sleep(30)", agent, limits=SandboxLimits(timeout_s=1.5))
    assert time.monotonic() - started < 10
    assert result.status == "error"
    assert result.error is not None
    assert "timed out after 1.5 s" in result.error
    assert "state" in result.error
    assert "lost" in result.error
    assert _processes_naming(gv.sessions.container_id(agent)) == []
    fresh = gv.code("'before' in globals()", agent)
    assert fresh.status == "success", fresh
    assert fresh.func_return is False


def test_a_crash_loses_the_session_and_says_so(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "crash")
    gv.code("before = 1", agent)
    result = gv.code("import os\nos._exit(3)", agent)
    assert result.status == "error"
    assert result.error is not None
    assert "the session was lost and restarted" in result.error
    assert gv.value("'before' in globals()", agent) is False


def test_memory_over_the_limit_is_a_memory_error_and_the_session_lives_on(
    gv: Sessions,
) -> None:
    agent = _fresh_agent(gv, "memory")
    gv.code("small = 1", agent)
    limits = SandboxLimits(memory_bytes=256 * 1024 * 1024)
    result = gv.code("big = bytearray(400 * 1024 * 1024)", agent, limits=limits)
    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith("MemoryError")
    assert gv.value("small", agent) == 1


def test_agents_run_in_parallel_and_one_agent_in_order(gv: Sessions) -> None:
    first, second = _fresh_agent(gv, "parallel-a"), _fresh_agent(gv, "parallel-b")
    for agent in (first, second):
        gv.code("import time\norder = []", agent)

    async def both() -> list[ToolJobResult]:
        jobs = [
            gv.sessions.run(
                agent,
                ToolJob(
                    source_code=f"order.append({i})\ntime.sleep(1.0)\norder", function_name=None
                ),
            )
            for agent in (first, second)
            for i in range(2)
        ]
        return await asyncio.gather(*jobs)

    started = time.monotonic()
    results = gv.runner.run(both())
    elapsed = time.monotonic() - started
    assert [r.func_return for r in results] == [[0], [0, 1], [0], [0, 1]]
    assert elapsed < 3.5, f"two agents' sessions did not run side by side ({elapsed:.1f} s)"


def test_an_unavailable_host_refuses_to_run(tmp_path: Path) -> None:
    sessions = GvisorSessions(
        root_dir=tmp_path / "sessions",
        workspaces=Workspaces(tmp_path / "workspaces"),
        runsc_path=tmp_path / "no-runsc",
    )
    protocol: CodeSessions = sessions  # GvisorSessions is the production CodeSessions
    assert protocol is sessions

    async def attempt() -> ToolJobResult:
        await sessions.start()
        await sessions.ready()
        try:
            return await sessions.run(AGENT, ToolJob(source_code="1", function_name=None))
        finally:
            await sessions.close()

    result = asyncio.run(attempt())
    assert sessions.unavailable_reason is not None
    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith("Code cannot run confined on this host")


# -- escape probes ------------------------------------------------------------------------


def test_escape_runs_as_a_non_root_uid_without_capabilities(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "escape-uid")
    source = (
        "import os\n"
        "status = open('/proc/self/status').read()\n"
        "caps = [l.split()[1] for l in status.splitlines() if l.startswith('Cap')]\n"
        "[os.getuid(), os.geteuid(), os.getgid(), caps]"
    )
    uid, euid, gid, caps = gv.value(source, agent)
    assert 0 not in (uid, euid, gid)
    assert set(caps) == {"0000000000000000"}


def test_escape_no_network(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "escape-net")
    accepted: list[object] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError, OSError):
                    accepted.append(listener.accept())

        watcher = threading.Thread(target=accept)
        watcher.start()
        try:
            source = (
                "import socket\n"
                "seen = {}\n"
                f"for host, port in [('127.0.0.1', {port}), ('1.1.1.1', 53), ('8.8.8.8', 443)]:\n"
                "    s = socket.socket(); s.settimeout(3)\n"
                "    try:\n"
                "        s.connect((host, port)); seen[host] = 'connected'\n"
                "    except OSError as error:\n"
                "        seen[host] = type(error).__name__\n"
                "    finally:\n"
                "        s.close()\n"
                "[seen, [name for _, name in socket.if_nameindex()]]"
            )
            seen, interfaces = gv.value(source, agent)
        finally:
            stop.set()
            watcher.join()
    assert "connected" not in seen.values(), seen
    assert interfaces == ["lo"]
    assert accepted == []


def test_escape_proc_shows_only_the_sessions_processes(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "escape-proc")
    source = (
        "import os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "names = [open(f'/proc/{p}/comm').read().strip() for p in pids]\n"
        "[pids, names, os.getpid()]"
    )
    pids, names, own = gv.value(source, agent)
    assert own == 1, "the session is its container's init"
    assert pids == [1]
    assert len(names) == 1


def test_escape_cannot_read_host_files(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "escape-read")
    data_dir = Path(tempfile.mkdtemp(prefix="kelpie-gvisor-data-"))
    try:
        (data_dir / "secret.txt").write_text("host-secret")
        os.chmod(data_dir, 0o755)
        os.chmod(data_dir / "secret.txt", 0o644)
        targets = [
            str(data_dir / "secret.txt"),
            str(gv.root_dir / "sessions" / ".runsc"),
            str(gv.sessions.image_path(agent).parent.parent / "config.json"),
            "/etc/shadow",
            "/root/.bashrc",
            "/root/.profile",
            str(Path(__file__)),
        ]
        source = (
            "import os\n"
            "seen = {}\n"
            f"for path in {targets!r}:\n"
            "    try:\n"
            "        open(path, 'rb').read(1); seen[path] = 'read'\n"
            "    except OSError as error:\n"
            "        seen[path] = type(error).__name__\n"
            "try:\n"
            "    root_home = sorted(os.listdir('/root'))\n"
            "except OSError:\n"
            "    root_home = []\n"
            "[seen, root_home, sorted(os.listdir('/'))]"
        )
        seen, root_home, top = gv.value(source, agent)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert "read" not in seen.values(), seen
    # Only the mount points of the server's Python (under /root when it is pyenv's).
    assert set(root_home) <= {".pyenv"}, root_home
    assert "workspace" in top
    assert not ({"home", "var", "srv", "mnt"} & set(top)), top


def test_escape_cannot_write_the_system(gv: Sessions) -> None:
    agent = _fresh_agent(gv, "escape-write")
    targets = ["/usr/kelpie-escape", "/usr/lib/kelpie-escape", "/etc/kelpie-escape",
               "/kelpie-escape", "/opt/kelpie-sandbox/kelpie-escape"]  # fmt: skip
    source = (
        "seen = {}\n"
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('x'); seen[path] = 'written'\n"
        "    except OSError as error:\n"
        "        seen[path] = type(error).__name__\n"
        "seen"
    )
    seen = gv.value(source, agent)
    assert "written" not in seen.values(), seen
    for path in ("/usr/kelpie-escape", "/usr/lib/kelpie-escape", "/etc/kelpie-escape"):
        assert not os.path.exists(path)
    assert not (gv.root_dir / "sessions" / ".rootfs" / "kelpie-escape").exists()


def test_no_session_is_left_running_after_close(tmp_path: Path) -> None:
    if find_runsc() is None:
        pytest.fail("gVisor (runsc) is not installed: run scripts/bootstrap")
    workspaces = Workspaces(tmp_path / "workspaces")
    sessions = GvisorSessions(root_dir=tmp_path / "sessions", workspaces=workspaces)

    async def use() -> None:
        await sessions.start()
        await sessions.ready()
        job = ToolJob(source_code="x = 1", function_name=None)
        for agent in ("agent-left-1", "agent-left-2"):
            assert (await sessions.run(agent, job)).status == "success"
        await sessions.close()

    asyncio.run(use())
    for agent in ("agent-left-1", "agent-left-2"):
        assert _processes_naming(sessions.container_id(agent)) == []
        assert sessions.image_path(agent).is_file()
    assert _processes_naming(str(tmp_path)) == []

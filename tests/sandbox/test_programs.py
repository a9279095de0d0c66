"""`ProgramSandbox` against the real process tier: long-lived programs (MCP stdio servers)
confined like the tool workers, run here as short Python programs that report what they
see as one JSON line.

One `ProcessSandbox` and one `ProgramSandbox` serve the module, on an event loop of their
own. The module's data dir (protected: never shown to a program) sits in the host's /tmp,
0755, with a 0644 secret file, so only the confinement keeps a program from it.

- A program runs as a uid of its own (not 0), with no capabilities, no_new_privs, the
  seccomp filter, Landlock, its own hostname, pid namespace and network namespace (only a
  down loopback), its own cgroups, the given environment and nothing of the host's.
- The network is the program's only when asked for: a TCP connect to a host listener on
  127.0.0.1 fails without it and works with it.
- Granted paths: read-only ones read but refuse writes; read-write ones take writes, which
  the program sees as its own and the host as the path owner's; nothing else of the host
  (the data dir, /etc/shadow, the host's /tmp) is there.
- Limits: rlimits as configured; a program over its memory limit is killed.
- `release()` kills what is left, removes the cgroups and gives the uid back.
- Refusals: a relative program, a path that does not exist, the data dir, a system
  directory, a read-write venv, a program inside the data dir, and a host that cannot
  confine (no bubblewrap) are refused with a sentence saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psutil
import pytest

from kelpie.sandbox import (
    MIB,
    ConfinedCommand,
    ConfineRefused,
    ProcessSandbox,
    ProgramLimits,
    ProgramSandbox,
)

PYTHON: Final = sys.executable
RUN_TIMEOUT_S: Final = 30.0
MEMORY_LIMIT: Final = 128 * MIB
# Prints what the program sees: identity, namespaces, environment.
REPORT: Final = textwrap.dedent(
    """
    import json, os, socket
    status = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        status[key] = value.strip()
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    print(json.dumps({
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
        "groups": os.getgroups(), "status": status, "hostname": socket.gethostname(),
        "pids": pids, "interfaces": [name for _, name in socket.if_nameindex()],
        "environ": dict(os.environ), "cwd": os.getcwd(),
        "limits": open("/proc/self/limits").read(),
    }), flush=True)
    import sys
    sys.stdin.read()
    """
)
# Tries each action given as JSON on argv[1]; prints {name: {"ok": bool, "error": str}}.
ATTEMPTS: Final = textwrap.dedent(
    """
    import json, os, socket, sys
    def attempt(kind, arg):
        try:
            if kind == "read":
                with open(arg, "rb") as f:
                    return {"ok": True, "bytes": len(f.read())}
            if kind == "list":
                return {"ok": True, "names": sorted(os.listdir(arg))}
            if kind == "write":
                fd = os.open(arg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, b"written inside")
                os.close(fd)
                return {"ok": True, "owner": os.stat(arg).st_uid}
            if kind == "connect":
                with socket.create_connection(("127.0.0.1", int(arg)), timeout=3):
                    return {"ok": True}
        except Exception as error:
            return {"ok": False, "error": f"{type(error).__name__}: {error}"}
        return {"ok": False, "error": "unknown"}
    print(json.dumps({n: attempt(k, a) for n, (k, a) in json.loads(sys.argv[1]).items()}))
    """
)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


class Harness:
    def __init__(
        self,
        runner: asyncio.Runner,
        sandbox: ProcessSandbox,
        programs: ProgramSandbox,
        data_dir: Path,
        secret: str,
    ) -> None:
        self.runner = runner
        self.sandbox = sandbox
        self.programs = programs
        self.data_dir = data_dir
        self.secret = secret

    def confine(self, argv: Sequence[str], **options: Any) -> ConfinedCommand:
        env = options.pop("env", {"KELPIE_TEST": "given"})
        return self.runner.run(self.programs.confine(argv, env, **options))

    def run(self, argv: Sequence[str], **options: Any) -> Ran:
        """Confines `argv`, runs it to its end and releases it."""
        command = self.confine(argv, **options)
        try:
            return self.runner.run(_spawn(command))
        finally:
            self.runner.run(command.release())

    def attempts(self, actions: dict[str, tuple[str, str]], **options: Any) -> dict[str, Any]:
        ran = self.run([PYTHON, "-c", ATTEMPTS, json.dumps(actions)], **options)
        assert ran.returncode == 0, ran
        seen: dict[str, Any] = json.loads(ran.stdout)
        return seen


async def _spawn(command: ConfinedCommand, stdin: bytes = b"") -> Ran:
    process = await asyncio.create_subprocess_exec(
        *command.argv,
        env=command.env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    async with asyncio.timeout(RUN_TIMEOUT_S):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    secret = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="kelpie-programs-"))
    root.chmod(0o755)
    data_dir = root / "data"
    data_dir.mkdir(mode=0o755)
    (data_dir / "kelpie.db").write_text(secret)
    (data_dir / "kelpie.db").chmod(0o644)
    try:
        with asyncio.Runner() as runner:
            sandbox = ProcessSandbox(root_dir=data_dir / "sandbox", pool_size=0)
            runner.run(sandbox.start())
            runner.run(sandbox.ready())
            if sandbox.unavailable_reason is not None:
                pytest.fail(f"the sandbox is unavailable: {sandbox.unavailable_reason}")
            programs = ProgramSandbox(
                sandbox,
                state_dir=data_dir / "sandbox" / "programs",
                protected=[data_dir],
                limits=ProgramLimits(memory_bytes=MEMORY_LIMIT),
            )
            try:
                yield Harness(runner, sandbox, programs, data_dir, secret)
            finally:
                runner.run(programs.close())
                runner.run(sandbox.close())
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def nothing_left(harness: Harness) -> Iterator[None]:
    """Every test releases what it confined."""
    yield
    assert harness.programs.live == 0
    assert harness.programs.uids_in_use() == set()


def _cgroup_dirs(pid: int) -> list[Path]:
    """The host's memory and pids cgroup directories of a process."""
    dirs = []
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in ("memory", "pids"):
            if controller in controllers.split(","):
                dirs.append(Path("/sys/fs/cgroup") / controller / path.lstrip("/"))
    return dirs


def _program_process(uid: int) -> psutil.Process:
    """The confined program (the last process of its uid to start, among our descendants)."""
    found = [p for p in psutil.Process().children(recursive=True) if p.uids().real == uid]
    assert found, f"no process runs as uid {uid}"
    return max(found, key=lambda p: p.create_time())


class TestIdentity:
    def test_a_program_runs_as_its_own_uid_in_namespaces_of_its_own(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("KELPIE_TEST_HOST_SECRET", harness.secret)
        command = harness.confine([PYTHON, "-c", REPORT])

        async def scenario() -> tuple[dict[str, Any], list[Path], int]:
            process = await asyncio.create_subprocess_exec(
                *command.argv,
                env=command.env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            assert process.stdout is not None
            assert process.stdin is not None
            async with asyncio.timeout(RUN_TIMEOUT_S):
                line = await process.stdout.readline()
            assert line, "the program said nothing"
            assert command.uid is not None
            program = _program_process(command.uid)
            dirs = _cgroup_dirs(program.pid)
            host_uid = program.uids().real
            process.stdin.close()
            await process.wait()
            return json.loads(line), dirs, host_uid

        try:
            seen, cgroup_dirs, host_uid = harness.runner.run(scenario())
        finally:
            harness.runner.run(command.release())

        assert command.uid is not None
        assert command.uid != 0
        assert host_uid == command.uid
        assert seen["uid"] == seen["euid"] == seen["gid"] == command.uid
        assert seen["groups"] in ([], [command.uid])
        status = seen["status"]
        assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "1")
        assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0
        assert seen["hostname"] == "kelpie-sandbox"
        assert len(seen["pids"]) <= 3, seen["pids"]
        assert seen["interfaces"] == ["lo"]
        assert seen["cwd"] == "/tmp"
        assert seen["environ"]["KELPIE_TEST"] == "given"
        assert seen["environ"]["HOME"] == "/tmp"
        assert harness.secret not in json.dumps(seen["environ"])
        assert "KELPIE_PROGRAM_ENV" not in seen["environ"]
        # Its own memory and pids cgroups, under the server's; gone once released.
        assert len(cgroup_dirs) == 2
        assert all(f"kelpie-{os.getpid()}" in str(d) for d in cgroup_dirs), cgroup_dirs
        assert not any(d.exists() for d in cgroup_dirs)

    def test_the_rlimits_apply(self, harness: Harness) -> None:
        script = "print(open('/proc/self/limits').read())"

        ran = harness.run([PYTHON, "-c", script])

        limits = {line[:26].strip(): line[26:].split()[:2] for line in ran.stdout.splitlines()[1:]}
        assert limits["Max open files"] == ["256", "256"]
        assert limits["Max processes"] == ["64", "64"]
        assert limits["Max core file size"] == ["0", "0"]
        assert limits["Max file size"] == [str(64 * MIB)] * 2

    def test_a_program_over_its_memory_limit_is_killed(self, harness: Harness) -> None:
        script = (
            "b = bytearray(512 * 1024 * 1024)\nb[::4096] = b'x' * len(b[::4096])\nprint('done')"
        )

        ran = harness.run([PYTHON, "-c", script])

        assert ran.returncode != 0
        assert "done" not in ran.stdout


class TestNetwork:
    def test_the_network_is_off_unless_asked_for(self, harness: Harness) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            port = str(listener.getsockname()[1])

            off = harness.attempts({"connect": ("connect", port)})
            with pytest.raises(BlockingIOError):
                listener.accept()
            on = harness.attempts({"connect": ("connect", port)}, network=True)
            accepted, _ = listener.accept()
            accepted.close()

        assert not off["connect"]["ok"], off
        assert on["connect"]["ok"], on


class TestFiles:
    def test_granted_paths_and_nothing_else(self, harness: Harness, tmp_path: Path) -> None:
        readable = tmp_path / "readable"
        readable.mkdir()
        (readable / "note.txt").write_text("read me")
        writable = tmp_path / "writable"
        writable.mkdir()
        host_tmp = Path(tempfile.mkdtemp(prefix="kelpie-host-tmp-"))
        host_tmp.chmod(0o755)
        (host_tmp / "host.txt").write_text("host")
        (host_tmp / "host.txt").chmod(0o644)
        try:
            seen = harness.attempts(
                {
                    "read granted": ("read", str(readable / "note.txt")),
                    "write read-only": ("write", str(readable / "new.txt")),
                    "write read-write": ("write", str(writable / "new.txt")),
                    "write tmp": ("write", "/tmp/scratch.txt"),
                    "read data dir": ("read", str(harness.data_dir / "kelpie.db")),
                    "list data dir": ("list", str(harness.data_dir)),
                    "read shadow": ("read", "/etc/shadow"),
                    "read host tmp": ("read", str(host_tmp / "host.txt")),
                    "write usr": ("write", "/usr/kelpie-probe"),
                    "write venv": ("write", str(Path(sys.prefix) / "kelpie-probe")),
                    "write root": ("write", "/kelpie-probe"),
                },
                read_only=[str(readable)],
                read_write=[str(writable)],
            )
        finally:
            shutil.rmtree(host_tmp)

        assert seen["read granted"]["ok"], seen
        assert seen["write read-write"]["ok"], seen
        assert seen["write tmp"]["ok"], seen
        refused = [
            "write read-only", "read data dir", "list data dir", "read shadow",
            "read host tmp", "write usr", "write venv", "write root",
        ]  # fmt: skip
        assert [name for name in refused if seen[name]["ok"]] == [], seen
        # Inside, the program owns what it wrote; on the host the owner of the path does.
        assert seen["write read-write"]["owner"] != 0
        assert (writable / "new.txt").read_text() == "written inside"
        assert (writable / "new.txt").stat().st_uid == writable.stat().st_uid
        assert not (readable / "new.txt").exists()
        assert not Path("/usr/kelpie-probe").exists()
        assert not (Path(sys.prefix) / "kelpie-probe").exists()
        assert not Path("/kelpie-probe").exists()


class TestRelease:
    def test_release_kills_what_runs_and_gives_back_the_uid(self, harness: Harness) -> None:
        command = harness.confine(
            [PYTHON, "-c", "import time; print('up', flush=True); time.sleep(600)"]
        )

        async def scenario() -> tuple[psutil.Process, list[Path]]:
            process = await asyncio.create_subprocess_exec(
                *command.argv,
                env=command.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
            assert process.stdout is not None
            async with asyncio.timeout(RUN_TIMEOUT_S):
                assert await process.stdout.readline() == b"up\n"
            assert command.uid is not None
            program = _program_process(command.uid)
            dirs = _cgroup_dirs(program.pid)
            assert harness.programs.uids_in_use() == {command.uid}
            await command.release()
            async with asyncio.timeout(RUN_TIMEOUT_S):
                await process.wait()
            return program, dirs

        program, dirs = harness.runner.run(scenario())

        assert not program.is_running() or program.status() == psutil.STATUS_ZOMBIE
        assert not any(d.exists() for d in dirs)
        assert harness.programs.uids_in_use() == set()
        assert command.uid not in {p.uids().real for p in psutil.process_iter()}


class TestRefusals:
    @pytest.mark.parametrize(
        ("argv", "options", "says"),
        [
            (["python3", "-c", "0"], {}, "is not an absolute path"),
            ([PYTHON, "-c", "0"], {"read_only": ["/no/such/dir"]}, "does not exist"),
            ([PYTHON, "-c", "0"], {"read_only": ["relative/dir"]}, "is not absolute"),
            ([PYTHON, "-c", "0"], {"read_only": ["/"]}, "cannot be shown to a sandbox"),
            ([PYTHON, "-c", "0"], {"read_only": ["/etc"]}, "cannot be shown to a sandbox"),
            ([PYTHON, "-c", "0"], {"read_write": ["/usr/lib"]}, "cannot be shown"),
            ([PYTHON, "-c", "0"], {"read_write": [sys.prefix]}, "cannot be shown"),
        ],
    )
    def test_what_cannot_be_confined_is_refused_saying_why(
        self, harness: Harness, argv: list[str], options: dict[str, Any], says: str
    ) -> None:
        with pytest.raises(ConfineRefused, match=says):
            harness.confine(argv, **options)

    def test_the_data_dir_is_never_granted(self, harness: Harness) -> None:
        for options in (
            {"read_only": [str(harness.data_dir)]},
            {"read_write": [str(harness.data_dir / "sandbox")]},
            {"read_only": [str(harness.data_dir.parent)]},
        ):
            with pytest.raises(ConfineRefused, match="cannot be shown to a sandbox"):
                harness.confine([PYTHON, "-c", "0"], **options)

    def test_a_program_inside_the_data_dir_is_refused(self, harness: Harness) -> None:
        program = harness.data_dir / "bin" / "tool"
        program.parent.mkdir(exist_ok=True)
        program.write_text("#!/bin/sh\necho hi\n")
        program.chmod(0o755)

        with pytest.raises(ConfineRefused, match="too broad to show a sandbox"):
            harness.confine([str(program)])

    def test_a_host_that_cannot_confine_refuses_saying_why(self, tmp_path: Path) -> None:
        async def scenario() -> None:
            sandbox = ProcessSandbox(
                root_dir=tmp_path / "sandbox", pool_size=0, bwrap_path=tmp_path / "no-bwrap"
            )
            await sandbox.start()
            programs = ProgramSandbox(sandbox, state_dir=tmp_path / "programs")
            try:
                with pytest.raises(ConfineRefused, match="bubblewrap"):
                    await programs.confine([PYTHON, "-c", "0"], {})
                assert programs.unavailable_reason is not None
            finally:
                await programs.close()
                await sandbox.close()

        asyncio.run(scenario())

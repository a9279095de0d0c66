"""Long-lived programs (MCP stdio servers) confined like the tool workers, for a caller that
spawns them itself: `ProgramSandbox.confine()` answers the command line and environment to
run instead of the program's own, and a `release()` to call once the process has ended.

What confines a program (the process tier's host plan, shared with the workers):
- bubblewrap: new user, pid, ipc, uts, cgroup and mount namespaces, and a network namespace
  of its own (nothing but a down loopback) unless the network is allowed;
- a read-only filesystem of /usr (and the root links into it), a few files of /etc, its own
  /etc/passwd and /etc/group, the server's Python, the install prefix the program runs
  from (found from its path and its `#!` interpreter, e.g. a venv or a Node.js install),
  a private /tmp (tmpfs, size-limited) as its home and working directory, and the host
  paths it is granted (read-only or read-write, mounted idmapped when the server is root:
  the path's owner appears as the program's uid and files it creates keep that owner);
- the seccomp filter of the workers, no capabilities, no_new_privs;
- Landlock (applied by `_program_exec` inside, which then execs the program: Landlock
  survives exec): writes only to /tmp and the read-write grants, signals and abstract unix
  sockets only within the sandbox, and with the network off no TCP bind or connect;
- when the server is root, a uid of its own from the sandbox's uid range (never root),
  and memory and pids cgroups (v1); rlimits NOFILE, FSIZE, CORE (and NPROC with its own
  uid). Without cgroups (a non-root server) memory is not bounded: an address-space limit
  would stop Node.js, which reserves gigabytes it never touches.

The launch chain: a root shell joins the cgroups and opens the seccomp filter and the
passwd/group files on fds 7-9; nsenter enters the stage's mount namespace; unshare makes
the program's own mount namespace; `_program_stage` (root) binds the program's paths into
a tmpfs only that namespace sees; unshare makes a reaping pid namespace; setpriv drops to
the uid with no capabilities; bubblewrap; `_program_exec`; the program. The program's environment
travels JSON-encoded in one variable through the chain (never argv): nothing running as
root interprets it."""

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import pwd
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kelpie.sandbox._bwrap import (
    SANDBOX_BASE_ENVIRONMENT,
    SANDBOX_HOSTNAME,
    SANDBOX_WORKER_DIR,
    SYSTEM_DIRS,
    SYSTEM_ROOT_LINKS,
    passwd_lines,
    system_args,
)
from kelpie.sandbox._cgroups import WorkerCgroup
from kelpie.sandbox._commands import run_command
from kelpie.sandbox._types import (
    SANDBOX_FILE_BYTES_MAX,
    SANDBOX_MEMORY_BYTES_DEFAULT,
    SANDBOX_OPEN_FILES_MAX,
    SANDBOX_PROCESSES_MAX,
    SANDBOX_TMP_BYTES_MAX,
)
from kelpie.sandbox._uids import UidsExhausted

if TYPE_CHECKING:
    from kelpie.sandbox._host import HostPlan
    from kelpie.sandbox._process import ProcessSandbox

_log = logging.getLogger("kelpie.sandbox")

SANDBOX_DIR: Final = Path(__file__).resolve().parent
KELPIE_PACKAGE_DIR: Final = SANDBOX_DIR.parent
PROGRAMS_STAGE_NAME: Final = "programs"
ENV_VARIABLE: Final = "KELPIE_PROGRAM_ENV"
CHAIN_PATH: Final = "/usr/bin:/bin:/usr/sbin:/sbin"
SECCOMP_FD: Final = 7
PASSWD_FD: Final = 8
GROUP_FD: Final = 9
# Opens the seccomp filter and the passwd/group files ($1-$3) on fds 7-9, joins the
# cgroups given by the next $1 arguments, then becomes the rest of the line.
_OPEN_AND_JOIN: Final = (
    'exec 7<"$1" 8<"$2" 9<"$3" || exit 125; shift 3; '
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; '
    'shift; n=$((n - 1)); done; exec "$@"'
)
# Host paths a program is never shown, whatever it is granted: the system's own state and
# devices. (Read-only /usr and the root links are shown to every program anyway.)
SYSTEM_PATHS: Final = (
    *SYSTEM_DIRS, *SYSTEM_ROOT_LINKS, "/etc", "/boot", "/proc", "/sys", "/dev", "/run",
)  # fmt: skip
# Directories an install prefix lies directly under (a prefix is the directory above them).
_BIN_DIRS: Final = ("bin", "sbin")
_NODE_MODULES: Final = "node_modules"
_SHEBANG_BYTES_MAX: Final = 256
# How long release() waits for the program's processes to be gone before it keeps the uid
# out of circulation.
RELEASE_POLL_INTERVAL_S: Final = 0.002
RELEASE_POLLS_MAX: Final = 2500
# How long the launch chain's head gets to exit by itself once its sandbox is killed.
RELEASE_HEAD_GRACE_POLLS: Final = 500


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProgramLimits:
    """What one confined program may use, enforced by the kernel; the tool workers'
    defaults."""

    memory_bytes: int = SANDBOX_MEMORY_BYTES_DEFAULT
    processes: int = SANDBOX_PROCESSES_MAX  # threads count too
    open_files: int = SANDBOX_OPEN_FILES_MAX
    file_bytes: int = SANDBOX_FILE_BYTES_MAX
    tmp_bytes: int = SANDBOX_TMP_BYTES_MAX

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            assert getattr(self, field.name) > 0, f"{field.name} must be positive"


class ConfineRefused(Exception):
    """The program cannot be confined (the host cannot, a path cannot be shown to it, no uid
    is free); the message says why, in one sentence."""


@dataclasses.dataclass(eq=False, kw_only=True)
class ConfinedCommand:
    """What to spawn instead of the program: `argv` with exactly `env` (its own environment
    is inside). `uid` is the host uid the program runs as (None: the server's own).
    `release()` gives back the uid and cgroups once the process has ended (killing what is
    left of it); it is safe to call more than once."""

    argv: list[str]
    env: dict[str, str]
    uid: int | None
    _release: Callable[[], Awaitable[None]]
    _released: bool = False

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        await self._release()


@dataclasses.dataclass(frozen=True)
class _Grant:
    source: Path  # on the host, symlinks resolved
    dest: str  # inside, as given (normalised)
    writable: bool


class ProgramSandbox:
    """Confines long-lived programs with the process tier's host plan (its uid range, cgroup
    group and stage). `protected` paths (the data dir) are never shown to a program.
    `state_dir` holds the seccomp filter and passwd files the launch chain opens (0700)."""

    def __init__(
        self,
        sandbox: "ProcessSandbox",
        *,
        state_dir: Path,
        protected: Sequence[Path] = (),
        limits: ProgramLimits | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._state_dir = state_dir
        self._protected = tuple(Path(os.path.realpath(p)) for p in protected)
        self.limits = ProgramLimits() if limits is None else limits
        self._stage_ready: asyncio.Task[None] | None = None
        self._seccomp_file: Path | None = None
        self._live: set[ConfinedCommand] = set()
        self._closed = False

    @property
    def unavailable_reason(self) -> str | None:
        """None when this host can confine programs (once the host check is done)."""
        return self._sandbox.unavailable_reason

    @property
    def live(self) -> int:
        """Confined commands not yet released."""
        return len(self._live)

    def uids_in_use(self) -> set[int]:
        return {c.uid for c in self._live if c.uid is not None}

    async def confine(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        network: bool = False,
        read_only: Sequence[str] = (),
        read_write: Sequence[str] = (),
    ) -> ConfinedCommand:
        """The command line to spawn `argv` (its program an absolute path) confined, with
        `env` as its whole environment. Raises ConfineRefused saying why it cannot."""
        assert argv, "no program"
        await self._sandbox.ready()
        reason = self._sandbox.unavailable_reason
        if reason is not None:
            raise ConfineRefused(reason)
        plan = self._plan()
        if self._closed or plan is None:
            raise ConfineRefused("the sandbox is not running")
        program = argv[0]
        if not os.path.isabs(program):
            raise ConfineRefused(f"the program '{program}' is not an absolute path")
        if not os.access(program, os.X_OK):
            raise ConfineRefused(f"the program '{program}' is not an executable file")
        grants = [
            *(self._grant(path, plan, writable=False) for path in read_only),
            *(self._grant(path, plan, writable=True) for path in read_write),
        ]
        prefixes = self._prefixes(program, env.get("PATH", CHAIN_PATH), plan)
        if plan.stage.holder_pid is not None and (prefixes or grants):
            await self._prepare_stage(plan)
        # From here on nothing awaits until the command is answered: what is taken is
        # either in the answer (released by its caller) or given back here.
        uid = None
        cgroup = None
        try:
            if plan.uids is not None:
                uid = plan.uids.take()
            if plan.cgroups is not None:
                cgroup = plan.cgroups.new_group(self.limits.memory_bytes, self.limits.processes)
            argv_out = self._command(
                plan,
                uid=uid,
                cgroup=cgroup,
                argv=argv,
                network=network,
                prefixes=prefixes,
                grants=grants,
            )
        except BaseException as error:
            if cgroup is not None:
                cgroup.remove()
            if uid is not None and plan.uids is not None:
                plan.uids.give_back(uid)
            if isinstance(error, UidsExhausted | OSError):
                raise ConfineRefused(f"the sandbox could not be prepared: {error}") from error
            raise
        inner_env = {
            **SANDBOX_BASE_ENVIRONMENT,
            "USER": "sandbox",
            "LOGNAME": "sandbox",
            "SHELL": "/bin/sh",
            **env,
        }
        command: ConfinedCommand

        async def release() -> None:
            try:
                await self._release(plan, uid, cgroup)
            finally:
                self._live.discard(command)

        command = ConfinedCommand(
            argv=argv_out,
            env={"PATH": CHAIN_PATH, ENV_VARIABLE: json.dumps(inner_env)},
            uid=uid,
            _release=release,
        )
        self._live.add(command)
        return command

    async def close(self) -> None:
        """Releases every command not yet released (killing what runs of it)."""
        self._closed = True
        await asyncio.gather(*(command.release() for command in list(self._live)))
        if self._stage_ready is not None:
            await asyncio.gather(self._stage_ready, return_exceptions=True)

    def _plan(self) -> "HostPlan | None":
        # The process tier's plan, shared: programs take uids from its range, cgroups under
        # its group, and enter its stage.
        return self._sandbox.host_plan

    def _grant(self, path: str, plan: "HostPlan", *, writable: bool) -> _Grant:
        what = "read-write" if writable else "read-only"
        if not os.path.isabs(path):
            raise ConfineRefused(f"the {what} path '{path}' is not absolute")
        dest = os.path.normpath(path)
        source = Path(os.path.realpath(path))
        if not source.exists():
            raise ConfineRefused(f"the {what} path '{path}' does not exist")
        forbidden = [*self._protected, *(Path(p) for p in SYSTEM_PATHS)]
        if writable:
            # The server's own Python and Kelpie: a file planted there would run in Kelpie.
            forbidden += [*plan.python_dirs, KELPIE_PACKAGE_DIR]
        for place in (source, Path(dest)):
            if len(place.parts) < 2 or any(_overlap(place, f) for f in forbidden):
                raise ConfineRefused(
                    f"the {what} path '{path}' cannot be shown to a sandbox: it is or holds "
                    "a system directory or Kelpie's own files"
                )
        if dest in ("/tmp", "/proc", "/dev", SANDBOX_WORKER_DIR) or _overlap(
            Path(dest), Path(SANDBOX_WORKER_DIR)
        ):
            raise ConfineRefused(f"the {what} path '{path}' is a place the sandbox keeps")
        return _Grant(source=source, dest=dest, writable=writable)

    def _prefixes(self, program: str, path: str, plan: "HostPlan") -> list[Path]:
        """The install prefixes the program runs from, beyond what every sandbox shows."""
        shown = [*(Path(p) for p in SYSTEM_DIRS), *plan.python_dirs]
        homes = {Path(entry.pw_dir) for entry in pwd.getpwall()}
        prefixes: list[Path] = []
        for file in _program_files(program, path):
            if any(file.is_relative_to(d) for d in shown) or _is_root_link_path(file):
                continue
            prefix = _prefix_of(file)
            if (
                len(prefix.parts) < 3
                or prefix in homes
                or any(_overlap(prefix, p) for p in self._protected)
                or any(_overlap(prefix, Path(p)) for p in SYSTEM_PATHS)
            ):
                raise ConfineRefused(
                    f"'{file}' lies in {prefix}, too broad to show a sandbox: install the "
                    "program in a directory of its own (such as a venv or an npm prefix)"
                )
            prefixes.append(prefix)
        return _outermost(prefixes)

    async def _prepare_stage(self, plan: "HostPlan") -> None:
        """Makes the stage's `programs` directory, once (each program mounts a tmpfs on it
        in its own namespace)."""
        making = self._stage_ready
        if making is None or (
            making.done() and (making.cancelled() or making.exception() is not None)
        ):
            making = self._stage_ready = asyncio.ensure_future(self._make_stage_dir(plan))
        try:
            await asyncio.shield(making)
        except OSError as error:
            raise ConfineRefused(f"the sandbox's stage could not be prepared: {error}") from error

    async def _make_stage_dir(self, plan: "HostPlan") -> None:
        directory = _stage_dir(plan)
        finished = await run_command(
            plan.tools.nsenter, f"--target={plan.stage.holder_pid}", "--mount", "--",
            "/bin/mkdir", "-p", "-m", "0755", str(directory),
            env={"PATH": CHAIN_PATH},
        )  # fmt: skip
        if finished.returncode != 0:
            detail = finished.output.decode(errors="replace").strip()
            raise OSError(detail or f"exit {finished.returncode}")

    def _files(self, uid: int) -> tuple[Path, Path, Path]:
        """The seccomp filter and the passwd and group files for `uid` (made once)."""
        self._state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self._state_dir, 0o700)
        if self._seccomp_file is None:
            self._seccomp_file = self._state_dir / "seccomp.bpf"
            _write_new(self._seccomp_file, self._plan_or_fail().seccomp_bpf)
        passwd, group = passwd_lines(uid)
        passwd_file = self._state_dir / f"passwd-{uid}"
        group_file = self._state_dir / f"group-{uid}"
        if not passwd_file.exists():
            _write_new(passwd_file, passwd.encode())
        if not group_file.exists():
            _write_new(group_file, group.encode())
        return self._seccomp_file, passwd_file, group_file

    def _plan_or_fail(self) -> "HostPlan":
        plan = self._plan()
        assert plan is not None, "no host plan"
        return plan

    def _command(
        self,
        plan: "HostPlan",
        *,
        uid: int | None,
        cgroup: WorkerCgroup | None,
        argv: Sequence[str],
        network: bool,
        prefixes: Sequence[Path],
        grants: Sequence[_Grant],
    ) -> list[str]:
        assert uid != 0, "a confined program is never host root"
        tools = plan.tools
        holder = plan.stage.holder_pid
        seccomp, passwd, group = self._files(os.getuid() if uid is None else uid)
        procs = [] if cgroup is None else cgroup.procs_files
        line = [tools.shell, "-c", _OPEN_AND_JOIN, "kelpie-program"]
        line += [str(seccomp), str(passwd), str(group), str(len(procs)), *procs]
        binds: list[tuple[str, str, bool]] = []  # (source, dest, writable)
        if holder is not None:
            assert uid is not None, "a root server runs programs as uids of their own"
            stage = _stage_dir(plan)
            staged: list[str] = []
            for i, prefix in enumerate(prefixes):
                staged += ["--bind", f"p{i}", str(prefix)]
                binds.append((str(stage / f"p{i}"), str(prefix), False))
            for i, grant in enumerate(grants):
                staged += ["--idmap", f"g{i}", str(grant.source)]
                binds.append((str(stage / f"g{i}"), grant.dest, grant.writable))
            line += [tools.nsenter, f"--target={holder}", "--mount", "--"]
            if staged:  # (a program of the server's own Python needs nothing staged)
                line += [tools.unshare, "--mount", "--propagation", "private", "--"]
                line += [plan.python, "-I", "-S", "-B", str(SANDBOX_DIR / "_program_stage.py")]
                line += [str(stage), str(uid), *staged, "--"]
            # A pid namespace whose init reaps everything on exit (see _bwrap.command); after
            # the staging, which needs the host's pids in /proc.
            line += [tools.unshare, "--pid", "--fork", "--kill-child", "--"]
        else:
            binds += [(str(prefix), str(prefix), False) for prefix in prefixes]
            binds += [(str(g.source), g.dest, g.writable) for g in grants]
        line += [tools.setpriv, "--pdeathsig=KILL", "--no-new-privs"]
        if uid is not None:
            line += [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            line += ["--inh-caps=-all", "--bounding-set=-all"]
        line += [str(tools.bwrap), *self._bwrap_args(plan, network, binds)]
        line += ["--", plan.python, "-I", "-S", "-B", f"{SANDBOX_WORKER_DIR}/_program_exec.py"]
        line += self._exec_options(network, grants, own_uid=uid is not None)
        return [*line, "--", *argv]

    def _bwrap_args(
        self, plan: "HostPlan", network: bool, binds: Sequence[tuple[str, str, bool]]
    ) -> list[str]:
        args = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--disable-userns", "--assert-userns-disabled"]
        if not network:
            args.append("--unshare-net")
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        args += ["--hostname", SANDBOX_HOSTNAME]
        args += system_args()
        args += ["--ro-bind-data", str(PASSWD_FD), "/etc/passwd"]
        args += ["--ro-bind-data", str(GROUP_FD), "/etc/group"]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        for i, path in enumerate(plan.python_dirs):
            args += ["--ro-bind", str(plan.stage.source(f"python{i}")), str(path)]
        args += ["--ro-bind", str(plan.stage.source("worker")), SANDBOX_WORKER_DIR]
        # Parents before what lies inside them.
        for source, dest, writable in sorted(binds, key=lambda bind: Path(bind[1]).parts):
            args += ["--bind" if writable else "--ro-bind", source, dest]
        args += ["--seccomp", str(SECCOMP_FD), "--chdir", "/tmp"]
        return args

    def _exec_options(self, network: bool, grants: Sequence[_Grant], *, own_uid: bool) -> list[str]:
        options = ["--network"] if network else []
        for grant in grants:
            if grant.writable:
                options += ["--write", grant.dest]
        limits = self.limits
        rlimits = {
            "RLIMIT_NOFILE": limits.open_files,
            "RLIMIT_FSIZE": limits.file_bytes,
            "RLIMIT_CORE": 0,
        }
        if own_uid:
            # Counts every process of the uid: only meaningful when the uid is the program's.
            rlimits["RLIMIT_NPROC"] = limits.processes
        for name, value in rlimits.items():
            options += ["--rlimit", f"{name}={value}:{value}"]
        return options

    async def _release(
        self, plan: "HostPlan", uid: int | None, cgroup: WorkerCgroup | None
    ) -> None:
        loop = asyncio.get_running_loop()
        clean = await loop.run_in_executor(None, _reap, uid, cgroup)
        if not clean:
            _log.warning("a confined program's processes (uid %s) would not die", uid)
            return  # keep its uid out of circulation
        if uid is not None and plan.uids is not None:
            plan.uids.give_back(uid)


def _reap(uid: int | None, cgroup: WorkerCgroup | None) -> bool:
    """Kills whatever is left of a program and waits until it is gone (in a thread); True
    when gone. The sandboxed processes (its uid) die first: the head of the launch chain
    (root, still in its cgroups while it runs) then reaps them and exits by itself, so none
    is left a zombie for the host's init; past a grace period the head is killed too."""
    for poll in range(RELEASE_POLLS_MAX):
        if cgroup is not None:
            pids = cgroup.pids()
            if not pids and cgroup.remove():
                return True
            everything = poll >= RELEASE_HEAD_GRACE_POLLS
            for pid in pids:
                if everything or _uid_of(pid) not in (0, None):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        elif uid is None or not _kill_uid(uid):
            return True
        time.sleep(RELEASE_POLL_INTERVAL_S)
    return False


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None


def _kill_uid(uid: int) -> bool:
    """SIGKILLs every process whose uid is `uid`; whether there was any."""
    found = False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            os.kill(int(entry.name), signal.SIGKILL)
            found = True
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _stage_dir(plan: "HostPlan") -> Path:
    return plan.stage.source("worker").parent / PROGRAMS_STAGE_NAME


def _write_new(path: Path, data: bytes) -> None:
    """Writes `path` whole (a reader never sees it half-written), readable by root only."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(partial, path)


def _overlap(a: Path, b: Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)


def _is_root_link_path(file: Path) -> bool:
    return any(file.is_relative_to(link) for link in SYSTEM_ROOT_LINKS)


def _program_files(program: str, path: str) -> list[Path]:
    """The program and its `#!` interpreter (found on `path` for `#!/usr/bin/env NAME`),
    each as named and with its symlinks resolved."""
    files = [program]
    interpreter = _interpreter(program, path)
    if interpreter is not None:
        files.append(interpreter)
    found: list[Path] = []
    for file in files:
        for candidate in (Path(os.path.abspath(file)), Path(os.path.realpath(file))):
            if candidate not in found:
                found.append(candidate)
    return found


def _interpreter(program: str, path: str) -> str | None:
    try:
        with open(program, "rb") as file:
            head = file.read(_SHEBANG_BYTES_MAX)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) != "env":
        return words[0]
    names = [word for word in words[1:] if not word.startswith("-") and "=" not in word]
    if not names:
        return None
    return shutil.which(names[0], path=path)


def _prefix_of(file: Path) -> Path:
    """The install prefix of a file: the directory holding its outermost node_modules, the
    directory above a bin/, or else its own directory."""
    parts = file.parts
    if _NODE_MODULES in parts[:-1]:
        return Path(*parts[: parts.index(_NODE_MODULES)])
    if file.parent.name in _BIN_DIRS:
        return file.parent.parent
    return file.parent


def _outermost(paths: Sequence[Path]) -> list[Path]:
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept

"""GvisorSessions: the strong-isolation tier for code mode. Each agent has one Python session
that keeps its state (variables, imports, open files) between executions, running in a gVisor
container (`runsc`, a user-space kernel between the code and the host), paused to disk when
idle (`runsc checkpoint`) and resumed on its next execution (`runsc restore`), also by a
server started later on the same state directory.

Layout under `root_dir`:
  .runsc/           runsc's own state (`runsc --root`)
  .rootfs/          the containers' read-only root: mount points, /bin-style links to /usr,
                    and /etc/passwd and /etc/group naming the session uid
  .probe/           the bundle of the container started once to check this host
  <agent_id>/       the agent's bundle: config.json (written when its session starts and
                    kept, so a restore sees the same mounts), image/ while paused

Inside a container: the host's /usr (and the server's Python prefixes) and a few files of
/etc read-only, the agent's workspace read-write at /workspace (the working directory), a
size-capped tmpfs /tmp, no network (runsc --network=none: loopback only), a non-root uid
with no capabilities, rlimits from the ceiling and a memory cgroup around the whole sandbox.

The channel is the container's stdio: one end of a socket pair is both stdin and stdout of
the `runsc run` (or `runsc restore`) process, which hands them to the sandbox. A restore
gives the restored process the new runsc's stdio in place of the old, so the host reattaches
through a new socket pair and the session, blocked reading its next job, carries on."""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, Final

from kelpie.sandbox import _frames, _host
from kelpie.sandbox._bwrap import (
    ETC_FILES,
    SANDBOX_BASE_ENVIRONMENT,
    SANDBOX_WORKER_DIR,
    SYSTEM_ROOT_LINKS,
    passwd_lines,
)
from kelpie.sandbox._cgroups import CGROUP_MOUNT
from kelpie.sandbox._child import Child, ChildOutput
from kelpie.sandbox._types import (
    MIB,
    SANDBOX_RESULT_BYTES_MAX,
    SANDBOX_TMP_BYTES_MAX,
    HostCalls,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
)
from kelpie.sandbox._worker_process import _receive_frame, answer_frame
from kelpie.sandbox._workspace import SANDBOX_WORKSPACE_DIR, WorkspaceFull, Workspaces

_log = logging.getLogger("kelpie.sandbox")

# The uid code runs as inside every session (and owns the agent's workspace while a session
# uses it): below the process tier's block of uids, never root.
GVISOR_SESSION_UID: Final = 60999
SESSION_HOSTNAME: Final = "kelpie-session"
# The sentry's own memory (Go runtime, page tables, the session's tmpfs) on top of the
# code's: the memory cgroup around the whole sandbox is the code's ceiling plus this.
SENTRY_MEMORY_BYTES: Final = 192 * MIB
# Host tasks of the sandbox (sentry threads, gofer, ptrace stubs), not the code's processes:
# those are held by RLIMIT_NPROC inside. A low host cap kills the sentry itself.
SANDBOX_HOST_TASKS_MAX: Final = 4096
SESSION_START_TIMEOUT_S: Final = 30.0
RUNSC_COMMAND_TIMEOUT_S: Final = 120.0
SESSION_EXIT_TIMEOUT_S: Final = 10.0
FAILED_START_EXIT_S: Final = 2.0
PROBE_TIMEOUT_S: Final = 60.0
STDERR_TAIL_CHARS: Final = 2000
SESSION_THREADS: Final = 8
RUNSC_PATHS: Final = ("/usr/bin/runsc", "/usr/sbin/runsc", "/usr/local/bin/runsc")
IMAGE_FILE: Final = "checkpoint.img"
_PROBE_OUTPUT: Final = "kelpie-probe-ok"
_LOST: Final = "the session was lost and restarted"
_CHUNK_BYTES: Final = 65536
# Longer agent ids are hashed: the container id names an abstract socket (108 bytes max).
CONTAINER_AGENT_CHARS_MAX: Final = 64
_HOST_PATH: Final = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
# The session program is imported rather than run as a script, so Python uses its cached
# bytecode when there is some.
_BOOT: Final = (
    f"import sys; sys.path.insert(0, {SANDBOX_WORKER_DIR!r}); import _session_program; "
    f"sys.path.remove({SANDBOX_WORKER_DIR!r}); _session_program.main()"
)


class SessionError(Exception):
    """A session could not be started, restored or reached; the message says why."""


@dataclasses.dataclass(kw_only=True)
class _Session:
    agent_id: str
    child: Child
    channel: socket.socket
    stderr_tail: "asyncio.Task[str]"
    last_used: float

    def alive(self) -> bool:
        return self.child.returncode is None


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Mount:
    source: str
    dest: str
    writable: bool = False


class GvisorSessions:
    """`CodeSessions` on gVisor. `limits` is the ceiling every session runs under (its
    container's hard rlimits and memory cgroup); each job's own limits apply inside it."""

    def __init__(
        self,
        *,
        root_dir: Path,
        workspaces: Workspaces,
        runsc_path: Path | None = None,
        limits: SandboxLimits | None = None,
        uid: int = GVISOR_SESSION_UID,
    ) -> None:
        assert uid != 0, "code must never run as root"
        self._root_dir = root_dir.absolute()
        self.workspaces = workspaces
        self._runsc = runsc_path if runsc_path is not None else find_runsc()
        self._limits = SandboxLimits() if limits is None else limits
        self._uid = uid
        self._reason: str | None = None
        self._checked: asyncio.Task[None] | None = None
        self._ignore_cgroups = False
        self._python = sys.executable
        self._python_dirs: tuple[Path, ...] = ()
        self._site_dirs: tuple[str, ...] = ()
        self._sessions: dict[str, _Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Future[Any]] = set()
        # Starting runsc (vfork, exec), its short commands and deleting images block: never
        # on the event loop's thread.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=SESSION_THREADS, thread_name_prefix="kelpie-gvisor"
        )
        self._closed = False
        # Container ids name host-wide things (the sandbox's abstract control socket, its
        # cgroups): this state directory's differ from another server's on the host.
        self._prefix = "kgv-" + _digest(str(self._root_dir), 8)
        self._probe_id = f"{self._prefix}.probe"

    @property
    def unavailable_reason(self) -> str | None:
        return self._reason

    async def start(self) -> None:
        """Checks the host (a probe container) in the background; `ready()` waits for it."""
        assert self._checked is None, "started twice"
        self._reason = self._quick_check()
        self._checked = asyncio.create_task(self._check_host(), name="kelpie-gvisor-check")

    async def ready(self) -> None:
        assert self._checked is not None, "not started"
        await asyncio.wait({self._checked})

    def container_id(self, agent_id: str) -> str:
        """The agent's container (also its cgroups' name), unique on the host."""
        self.workspaces.directory(agent_id)  # asserts it is an agent id
        name = agent_id if len(agent_id) <= CONTAINER_AGENT_CHARS_MAX else _digest(agent_id, 32)
        return f"{self._prefix}-{name}"

    def image_path(self, agent_id: str) -> Path:
        """The checkpoint image of the agent's paused session (present only while paused)."""
        return self._agent_dir(agent_id) / "image" / IMAGE_FILE

    def is_running(self, agent_id: str) -> bool:
        session = self._sessions.get(agent_id)
        return session is not None and session.alive()

    # -- the host check -----------------------------------------------------------------

    def _quick_check(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return f"gVisor needs Linux, this host is {sys.platform}"
        if self._runsc is None:
            return "gVisor (runsc) is not installed: run scripts/bootstrap (Debian package runsc)"
        if not os.access(self._runsc, os.X_OK):
            return f"gVisor's runsc at {self._runsc} is not an executable"
        if os.geteuid() != 0:
            return "gVisor sessions need the server to run as root (runsc creates namespaces)"
        return None

    async def _check_host(self) -> None:
        if self._reason is None:
            try:
                await self._prepare()
            except SessionError as error:
                self._reason = str(error)
            except OSError as error:
                self._reason = f"gVisor sessions could not be prepared: {error}"
        if self._reason is not None:
            _log.warning("gVisor sessions off: %s; code sessions will not run", self._reason)
        else:
            cgroups = "no cgroups (rlimits only)" if self._ignore_cgroups else "memory cgroup"
            _log.info("gVisor sessions: %s, uid %d, %s", self._runsc, self._uid, cgroups)

    async def _prepare(self) -> None:
        try:
            self._python_dirs = _host._python_dirs()
        except _host.HostUnfit as error:
            raise SessionError(str(error)) from error
        self._site_dirs = _host._site_dirs(self._python_dirs)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self._make_root)
        failure = await self._probe()
        if failure is not None:
            # Some hosts let runsc run but not make cgroups: then rlimits alone hold memory.
            self._ignore_cgroups = True
            if await self._probe() is not None:
                raise SessionError(f"gVisor could not start a container here: {failure}")
            _log.warning("gVisor sessions run without cgroups here: %s", failure)

    async def _probe(self) -> str | None:
        """Starts a container that prints a word and exits; None when the word came back."""
        bundle = self._root_dir / ".probe"
        check = f"print({_PROBE_OUTPUT!r})"
        args = [self._python, "-I", "-B", "-S", "-c", check]
        loop = asyncio.get_running_loop()

        def run() -> "subprocess.CompletedProcess[bytes]":
            bundle.mkdir(mode=0o700, exist_ok=True)
            spec = self._spec(args, workspace=None, cgroup=self._probe_id)
            (bundle / "config.json").write_text(json.dumps(spec, indent=1))
            self._delete_stale(self._probe_id)
            try:
                return subprocess.run(
                    [*self._runsc_argv(), "run", "--bundle", str(bundle), self._probe_id],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=PROBE_TIMEOUT_S,
                    env=_HOST_PATH,
                    start_new_session=True,
                )
            finally:
                self._delete_stale(self._probe_id)

        try:
            done = await loop.run_in_executor(self._threads, run)
        except (OSError, subprocess.TimeoutExpired) as error:
            return str(error)
        if done.returncode == 0 and done.stdout.decode(errors="replace").strip() == _PROBE_OUTPUT:
            return None
        said = (done.stderr or done.stdout).decode(errors="replace").strip()
        return f"exit status {done.returncode}: {said[-STDERR_TAIL_CHARS:] or 'no output'}"

    def _make_root(self) -> None:
        """The containers' root: empty mount points, the host's /bin-style links and the
        sandbox's own passwd and group; nothing of the host's is copied into it."""
        root = self._root_dir / ".rootfs"
        # Root's alone: checkpoint images hold whatever the sessions held (secrets too).
        self._root_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for directory in ("proc", "dev", "tmp", "etc", "usr", SANDBOX_WORKSPACE_DIR[1:]):
            (root / directory).mkdir(parents=True, exist_ok=True)
        for mount in self._system_mounts():
            target = root / mount.dest.lstrip("/")
            if os.path.isdir(mount.source):
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        for link in SYSTEM_ROOT_LINKS:
            target = root / link.lstrip("/")
            if os.path.islink(link) and not os.path.lexists(target):
                target.symlink_to(os.readlink(link))
        passwd, group = passwd_lines(self._uid)
        _write_if_changed(root / "etc" / "passwd", passwd)
        _write_if_changed(root / "etc" / "group", group)
        for path in (root, *root.rglob("*")):
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.is_dir() else 0o644)

    def _system_mounts(self) -> list[_Mount]:
        mounts = [_Mount(source="/usr", dest="/usr")]
        for link in SYSTEM_ROOT_LINKS:
            if os.path.isdir(link) and not os.path.islink(link):
                mounts.append(_Mount(source=link, dest=link))
        for name in ETC_FILES:
            if os.path.exists(f"/etc/{name}"):
                mounts.append(_Mount(source=f"/etc/{name}", dest=f"/etc/{name}"))
        mounts += [_Mount(source=str(d), dest=str(d)) for d in self._python_dirs]
        mounts.append(_Mount(source=str(_host.WORKER_DIR), dest=SANDBOX_WORKER_DIR))
        return mounts

    # -- the bundle ---------------------------------------------------------------------

    def _spec(self, args: Sequence[str], *, workspace: Path | None, cgroup: str) -> dict[str, Any]:
        limits = self._limits
        mounts: list[dict[str, Any]] = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": [f"size={SANDBOX_TMP_BYTES_MAX}", "mode=1777", "nosuid", "nodev"],
            },
        ]
        system = self._system_mounts()
        if workspace is not None:
            system.append(_Mount(source=str(workspace), dest=SANDBOX_WORKSPACE_DIR, writable=True))
        for mount in system:
            options = ["rbind", "rw" if mount.writable else "ro", "nosuid", "nodev"]
            mounts.append(
                {
                    "destination": mount.dest,
                    "type": "bind",
                    "source": mount.source,
                    "options": options,
                }
            )
        rlimits = [
            ("RLIMIT_AS", limits.memory_bytes),
            ("RLIMIT_NPROC", limits.processes),
            ("RLIMIT_NOFILE", limits.open_files),
            ("RLIMIT_FSIZE", limits.file_bytes),
            ("RLIMIT_CORE", 0),
        ]
        environment = {**SANDBOX_BASE_ENVIRONMENT, "PYTHONUNBUFFERED": "1"}
        resources: dict[str, Any] = {
            "memory": {"limit": limits.memory_bytes + SENTRY_MEMORY_BYTES},
            "pids": {"limit": SANDBOX_HOST_TASKS_MAX},
        }
        return {
            "ociVersion": "1.0.2",
            "process": {
                "user": {"uid": self._uid, "gid": self._uid},
                "args": list(args),
                "env": [f"{key}={value}" for key, value in environment.items()],
                "cwd": SANDBOX_WORKSPACE_DIR if workspace is not None else "/tmp",
                "capabilities": {
                    "bounding": [],
                    "effective": [],
                    "inheritable": [],
                    "permitted": [],
                    "ambient": [],
                },
                "noNewPrivileges": True,
                "rlimits": [{"type": t, "hard": n, "soft": n} for t, n in rlimits],
            },
            "root": {"path": str(self._root_dir / ".rootfs"), "readonly": True},
            "hostname": SESSION_HOSTNAME,
            "mounts": mounts,
            "linux": {
                "namespaces": [
                    {"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")
                ],
                "resources": resources,
                "cgroupsPath": cgroup,
            },
        }

    def _runsc_argv(self) -> list[str]:
        assert self._runsc is not None
        argv = [str(self._runsc), "--root", str(self._root_dir / ".runsc"), "--network=none"]
        if self._ignore_cgroups:
            argv.append("--ignore-cgroups")
        return argv

    def _agent_dir(self, agent_id: str) -> Path:
        self.workspaces.directory(agent_id)  # asserts it is an agent id
        return self._root_dir / agent_id

    def _delete_stale(self, container_id: str) -> None:
        """Removes what is left of a container no process of ours runs (a server that died
        mid-way, or a start that failed, left runsc's state or cgroups). Blocking."""
        state = self._root_dir / ".runsc"
        if any(state.glob(f"{container_id}_sandbox*")):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    [*self._runsc_argv(), "delete", "-force", container_id],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=RUNSC_COMMAND_TIMEOUT_S,
                    env=_HOST_PATH,
                )
        _remove_cgroups(container_id)

    async def _runsc_command(self, *args: str) -> "subprocess.CompletedProcess[bytes]":
        loop = asyncio.get_running_loop()

        def run() -> "subprocess.CompletedProcess[bytes]":
            return subprocess.run(
                [*self._runsc_argv(), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=RUNSC_COMMAND_TIMEOUT_S,
                env=_HOST_PATH,
            )

        return await loop.run_in_executor(self._threads, run)

    # -- running code -------------------------------------------------------------------

    async def run(
        self, agent_id: str, job: ToolJob, calls: HostCalls | None = None
    ) -> ToolJobResult:
        if self._checked is None:
            return _refused("the code sessions are not running")
        await self.ready()
        if self._reason is not None:
            return _refused(self._reason)
        refusal = _unsupported(agent_id, job)
        if refusal is not None:
            return ToolJobResult(status="error", error=refusal)
        async with self._lock(agent_id):
            if self._closed:
                return _refused("the code sessions are not running")
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(
                    self._threads, self.workspaces.prepare, agent_id, self._uid
                )
            except WorkspaceFull as error:
                return ToolJobResult(status="error", error=str(error))
            note = ""
            session = self._sessions.get(agent_id)
            if session is not None and not session.alive():
                why = await self._forget(session)
                note = f"[kelpie] {_LOST} (it had ended: {why}); earlier variables are gone\n"
                session = None
            if session is None:
                try:
                    session, restore_failure = await self._resume_or_start(agent_id)
                except (SessionError, OSError) as error:
                    return ToolJobResult(
                        status="error", error=f"The code session could not start: {error}"
                    )
                if restore_failure is not None:
                    note = (
                        f"[kelpie] the paused session could not be restored "
                        f"({restore_failure}): {_LOST}; earlier variables are gone\n"
                    )
            result = await self._execute(session, job, calls)
        if note:
            result = dataclasses.replace(result, stderr=note + result.stderr)
        return result

    def _lock(self, agent_id: str) -> asyncio.Lock:
        return self._locks.setdefault(agent_id, asyncio.Lock())

    async def _resume_or_start(self, agent_id: str) -> tuple[_Session, str | None]:
        """The agent's session, from its paused image when it has one; with the reason a
        restore failed (a fresh session then runs instead)."""
        loop = asyncio.get_running_loop()
        if not self.image_path(agent_id).is_file():
            return await self._launch(agent_id, restore=False), None
        # The image is spent either way: a running session has none (a server that dies
        # now loses it, as it would any running session).
        try:
            session = await self._launch(agent_id, restore=True)
        except (SessionError, OSError) as error:
            failure = str(error)
        else:
            await loop.run_in_executor(self._threads, self._remove_image, agent_id)
            return session, None
        await loop.run_in_executor(self._threads, self._remove_image, agent_id)
        _log.warning("gVisor session of %s not restored: %s", agent_id, failure)
        return await self._launch(agent_id, restore=False), failure

    def _remove_image(self, agent_id: str) -> None:
        shutil.rmtree(self._agent_dir(agent_id) / "image", ignore_errors=True)

    async def _launch(self, agent_id: str, *, restore: bool) -> _Session:
        agent_dir = self._agent_dir(agent_id)
        container_id = self.container_id(agent_id)
        workspace = self.workspaces.directory(agent_id).absolute()
        loop = asyncio.get_running_loop()

        def prepare() -> None:
            agent_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            config = agent_dir / "config.json"
            if not restore or not config.is_file():
                # A restore must see the mounts its image was taken with: the spec is kept.
                args = [self._python, "-I", "-B", "-S", "-c", _BOOT]
                spec = self._spec(args, workspace=workspace, cgroup=container_id)
                config.write_text(json.dumps(spec, indent=1))
            self._delete_stale(container_id)

        await loop.run_in_executor(self._threads, prepare)
        if restore:
            image = str(self.image_path(agent_id).parent)
            command = ["restore", "--image-path", image, "--bundle", str(agent_dir), container_id]
        else:
            command = ["run", "--bundle", str(agent_dir), container_id]
        session = await self._spawn(agent_id, [*self._runsc_argv(), *command])
        body: bytes | None = None
        try:
            async with asyncio.timeout(SESSION_START_TIMEOUT_S):
                if restore:
                    # Restored, the session waits for a job: a ping proves it carries on.
                    await loop.sock_sendall(session.channel, _encode({"ping": True}))
                body = await _receive_frame(session.channel)
        except TimeoutError as error:
            why = await self._forget(session)
            raise SessionError(f"no answer in {SESSION_START_TIMEOUT_S:.0f} s ({why})") from error
        except (OSError, _frames.FrameTooLarge):
            pass  # runsc failed (or the session): its exit and stderr say why
        except BaseException:
            await self._forget(session)
            raise
        expected = "pong" if restore else "ready"
        if body is None or expected not in _loads(body):
            # A runsc that failed is on its way out: let it go by itself, then ask why.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FAILED_START_EXIT_S):
                    await session.child.wait()
            raise SessionError(await self._forget(session))
        self._sessions[agent_id] = session
        return session

    async def _spawn(self, agent_id: str, argv: list[str]) -> _Session:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err_ours, err_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

        def start() -> "subprocess.Popen[bytes]":
            return subprocess.Popen(
                argv,
                stdin=theirs.fileno(),
                stdout=theirs.fileno(),
                stderr=err_theirs.fileno(),
                start_new_session=True,
                env=_HOST_PATH,
            )

        loop = asyncio.get_running_loop()
        spawning = loop.run_in_executor(self._threads, start)
        try:
            # The start runs to its end even when we are cancelled: the child must be known
            # so it can be ended (and the thread is handing it our fds).
            popen = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                popen = await spawning
                popen.kill()
                popen.wait()
            ours.close()
            err_ours.close()
            raise
        except BaseException:
            ours.close()
            err_ours.close()
            raise
        finally:
            theirs.close()
            err_theirs.close()
        channel_output = ChildOutput(ours)  # makes `ours` non-blocking
        errors = ChildOutput(err_ours)
        child = Child(popen, channel_output, errors)
        tail = asyncio.create_task(_tail(errors), name=f"kelpie-gvisor-stderr-{agent_id}")
        return _Session(
            agent_id=agent_id,
            child=child,
            channel=ours,
            stderr_tail=tail,
            last_used=time.monotonic(),
        )

    async def _execute(
        self, session: _Session, job: ToolJob, calls: HostCalls | None
    ) -> ToolJobResult:
        limits = job.limits
        payload = {
            "source_code": job.source_code,
            "tools": [{"name": t.name, "parameters": list(t.parameters)} for t in job.tools],
            "environment": dict(job.environment),
            "limits": {
                "memory_bytes": limits.memory_bytes,
                "processes": limits.processes,
                "open_files": limits.open_files,
                "file_bytes": limits.file_bytes,
            },
            "output_bytes": limits.output_bytes,
            "sys_path": list(self._site_dirs),
        }
        loop = asyncio.get_running_loop()
        reply: dict[str, Any] | None = None
        failure: str | None = None
        try:
            async with asyncio.timeout(limits.timeout_s):
                await loop.sock_sendall(session.channel, _encode(payload))
                reply = await _converse(session.channel, calls)
        except TimeoutError:
            failure = (
                f"Code timed out after {limits.timeout_s:.1f} s: the session was killed and "
                f"its state (variables, imports) is lost; the next run starts a new session"
            )
        except _frames.FrameTooLarge:
            failure = (
                f"Code returned more than {SANDBOX_RESULT_BYTES_MAX // MIB} MiB: the session "
                f"was killed and its state is lost; the next run starts a new session"
            )
        except OSError:
            pass  # the session died: its exit says why
        except BaseException:
            # Cancelled mid-execution: the channel is out of step; the session cannot go on.
            # It is ended before the agent's lock is let go, unless cancelled once more (the
            # next start then clears what is left of it).
            ending = self._in_background(self._forget(session))
            with contextlib.suppress(BaseException):
                await asyncio.shield(ending)
            raise
        session.last_used = time.monotonic()
        if reply is not None:
            return _result(reply, limits)
        why = await self._forget(session)
        if failure is None:
            failure = f"The code's session ended during the run ({why}): {_LOST}"
        return ToolJobResult(status="error", error=failure)

    # -- ending sessions ----------------------------------------------------------------

    async def _forget(self, session: _Session) -> str:
        """Ends the session (it is dead, or must be), forgets it and says how it ended."""
        if self._sessions.get(session.agent_id) is session:
            del self._sessions[session.agent_id]
        container_id = self.container_id(session.agent_id)
        child = session.child
        ended_here = child.returncode is None
        if ended_here:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                await self._runsc_command("kill", container_id, "KILL")
            try:
                async with asyncio.timeout(SESSION_EXIT_TIMEOUT_S):
                    await child.wait()
            except TimeoutError:
                # The sandbox and gofer are attached: they die with their runsc.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                await child.wait()
        try:
            async with asyncio.timeout(SESSION_EXIT_TIMEOUT_S):
                said = await session.stderr_tail
        except TimeoutError:
            said = ""
        child.close_output()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self._delete_stale, container_id)
        status = "ended by the host" if ended_here else _exit_text(child.returncode)
        if not ended_here and child.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL):
            memory = _size(self._limits.memory_bytes + SENTRY_MEMORY_BYTES)
            status += f", as when the sandbox outgrows its memory limit of {memory}"
        return f"{status}: {said}" if said else status

    async def pause(self, agent_id: str) -> bool:
        """Checkpoints the agent's running session to disk and stops it; False when it has
        none running (or the checkpoint failed: then it keeps running)."""
        async with self._lock(agent_id):
            return await self._pause_locked(agent_id)

    async def _pause_locked(self, agent_id: str) -> bool:
        session = self._sessions.get(agent_id)
        if session is None:
            return False
        if not session.alive():
            await self._forget(session)
            return False
        image = self.image_path(agent_id).parent
        partial = image.with_name("image.partial")
        loop = asyncio.get_running_loop()

        def clear() -> None:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(mode=0o700)

        await loop.run_in_executor(self._threads, clear)
        container_id = self.container_id(agent_id)
        try:
            done = await self._runsc_command(
                "checkpoint", "--image-path", str(partial), container_id
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            _log.warning("gVisor session of %s not paused: %s", agent_id, error)
            return False
        if done.returncode != 0 or not (partial / IMAGE_FILE).is_file():
            said = done.stderr.decode(errors="replace").strip()[-STDERR_TAIL_CHARS:]
            _log.warning("gVisor session of %s not paused: %s", agent_id, said)
            if session.alive():
                return False
            await self._forget(session)
            return False
        # Checkpointed, the container stops and its runsc exits (and deletes it).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SESSION_EXIT_TIMEOUT_S):
                await session.child.wait()
        await self._forget(session)

        def keep() -> None:
            shutil.rmtree(image, ignore_errors=True)
            partial.rename(image)

        await loop.run_in_executor(self._threads, keep)
        return True

    async def pause_idle(self, idle_s: float) -> int:
        now = time.monotonic()
        idle = [
            agent_id
            for agent_id, session in self._sessions.items()
            if now - session.last_used >= idle_s and not self._lock(agent_id).locked()
        ]

        async def pause_if_idle(agent_id: str) -> bool:
            async with self._lock(agent_id):
                session = self._sessions.get(agent_id)
                if session is None or time.monotonic() - session.last_used < idle_s:
                    return False
                return await self._pause_locked(agent_id)

        paused = await asyncio.gather(*(pause_if_idle(agent_id) for agent_id in idle))
        return sum(paused)

    async def discard(self, agent_id: str) -> None:
        async with self._lock(agent_id):
            session = self._sessions.get(agent_id)
            if session is not None:
                await self._forget(session)
            agent_dir = self._agent_dir(agent_id)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                self._threads, lambda: shutil.rmtree(agent_dir, ignore_errors=True)
            )

    async def close(self) -> None:
        """Pauses every running session (one that cannot be paused is ended)."""
        if self._closed:
            return
        self._closed = True
        if self._checked is not None:
            self._checked.cancel()
            await asyncio.gather(self._checked, return_exceptions=True)

        async def pause_or_end(agent_id: str) -> bool:
            async with self._lock(agent_id):
                if await self._pause_locked(agent_id):
                    return True
                session = self._sessions.get(agent_id)
                if session is not None:
                    await self._forget(session)
                return False

        running = list(self._sessions)
        paused = await asyncio.gather(*(pause_or_end(agent_id) for agent_id in running))
        if running:
            _log.info("gVisor sessions: %d of %d paused at close", sum(paused), len(running))
        await asyncio.gather(*self._background, return_exceptions=True)
        self._threads.shutdown(wait=False)

    def _in_background(self, work: Awaitable[Any]) -> "asyncio.Future[Any]":
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def find_runsc() -> Path | None:
    found = shutil.which("runsc", path="/usr/bin:/bin:/usr/sbin:/sbin:/usr/local/bin")
    if found is not None:
        return Path(found)
    for path in RUNSC_PATHS:
        if os.access(path, os.X_OK):
            return Path(path)
    return None


async def _converse(channel: socket.socket, calls: HostCalls | None) -> dict[str, Any] | None:
    """Answers the session's tool calls until its result arrives (None: it never came)."""
    loop = asyncio.get_running_loop()
    while True:
        body = await _receive_frame(channel)
        if body is None:
            return None
        message = _loads(body)
        if "call" not in message:
            result = message.get("result")
            if not isinstance(result, dict):
                return {"status": "error", "error": "The session sent an unreadable reply"}
            return result
        await loop.sock_sendall(channel, await answer_frame(message, calls))


def _result(reply: dict[str, Any], limits: SandboxLimits) -> ToolJobResult:
    stdout, stderr = str(reply.get("stdout", "")), str(reply.get("stderr", ""))
    if reply.get("status") not in ("success", "error"):
        return ToolJobResult(
            status="error",
            stdout=stdout,
            stderr=stderr,
            error=str(reply.get("error") or "The session sent an unreadable reply"),
        )
    for name in ("stdout", "stderr"):
        size = reply.get(f"{name}_bytes", 0)
        if isinstance(size, int) and size > limits.output_bytes:
            return ToolJobResult(
                status="error",
                stdout=stdout,
                stderr=stderr,
                error=f"Code printed more than {_size(limits.output_bytes)} to {name} "
                f"(cut there; the session lives on)",
            )
    error = reply.get("error")
    if reply.get("exception") == "MemoryError":
        error = (
            f"MemoryError: the code exceeded its memory limit of {_size(limits.memory_bytes)} "
            f"(the session lives on)"
        )
    return ToolJobResult(
        status=reply["status"],
        func_return=reply.get("func_return"),
        stdout=stdout,
        stderr=stderr,
        error=None if reply["status"] == "success" else str(error),
        traceback=reply.get("traceback"),
    )


def _unsupported(agent_id: str, job: ToolJob) -> str | None:
    if job.function_name is not None:
        return "Code sessions run code-mode jobs only (no function_name)"
    if job.workspace is not None and job.workspace != agent_id:
        return "A code session works in its own agent's workspace only"
    if job.network:
        return "Code sessions have no network"
    if job.pip_requirements:
        return "Code sessions do not install requirements"
    return None


def _refused(reason: str) -> ToolJobResult:
    return ToolJobResult(status="error", error=f"Code cannot run confined on this host: {reason}")


async def _tail(output: ChildOutput) -> str:
    """The end of what runsc and the session wrote to stderr, read until it closes."""
    kept = b""
    while chunk := await output.read(_CHUNK_BYTES):
        kept = (kept + chunk)[-STDERR_TAIL_CHARS:]
    return kept.decode(errors="replace").strip()


def _encode(message: dict[str, Any]) -> bytes:
    return _frames.encode(json.dumps(message).encode())


def _loads(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _size(n_bytes: int) -> str:
    return f"{n_bytes // MIB} MiB" if n_bytes % MIB == 0 else f"{n_bytes} bytes"


def _exit_text(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        return f"runsc was killed by signal {-returncode}"
    if returncode > 128:
        return f"killed by signal {returncode - 128}"
    return f"exit status {returncode}"


def _remove_cgroups(name: str) -> None:
    """Removes the (empty) cgroups named `name` under this process's own, in every
    hierarchy: runsc leaves them behind when a sandbox fails to start."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = [path for path in CGROUP_MOUNT.iterdir() if path.is_dir()]
    except OSError:
        return
    own = {line.split(":", 2)[2].strip("/") for line in lines if line.count(":") >= 2}
    for mount in mounts:
        for parent in own:
            with contextlib.suppress(OSError):
                (mount / parent / name).rmdir()


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)

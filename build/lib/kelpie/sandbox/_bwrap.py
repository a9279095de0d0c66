"""The command line that starts one sandboxed worker: join its cgroups (root, as a tiny
shell), enter the stage's mount namespace, wrap it in a reaping pid namespace and drop to
the worker's own uid with no capabilities (nsenter, unshare, setpriv), then bubblewrap,
which makes the namespaces and the read-only filesystem, loads the seccomp filter and runs
the worker unprivileged."""

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

# Inside the sandbox.
SANDBOX_WORKER_DIR: Final = "/opt/kelpie-sandbox"
SANDBOX_PIP_DIR: Final = "/opt/kelpie-pip"
SANDBOX_PIP_TARGET_DIR: Final = "/opt/kelpie-pip-target"
SANDBOX_HOSTNAME: Final = "kelpie-sandbox"
SANDBOX_BASE_ENVIRONMENT: Final = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
}
SYSTEM_DIRS: Final = ("/usr",)
SYSTEM_ROOT_LINKS: Final = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
ETC_FILES: Final = (
    "resolv.conf", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "services",
    "protocols", "localtime", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl",
    "ca-certificates", "ca-certificates.conf", "pki", "mime.types",
)  # fmt: skip
# Joins the cgroups given as the first $1 arguments, then becomes the rest of the line.
_JOIN_CGROUPS: Final = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; '
    'shift; n=$((n - 1)); done; exec "$@"'
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bind:
    source: Path
    dest: str
    writable: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tools:
    """Host programs, by absolute path."""

    bwrap: Path
    setpriv: str
    nsenter: str
    unshare: str
    shell: str = "/bin/sh"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Launch:
    uid: int | None  # None: the server is not root; bubblewrap runs as the server's uid
    holder_pid: int | None
    cgroup_procs: Sequence[str]
    binds: Sequence[Bind]
    network: bool
    tmp_bytes: int
    python: str
    worker_args: Sequence[str]
    seccomp_fd: int
    passwd_fd: int
    group_fd: int


# The worker is imported rather than run as a script, so Python uses its cached bytecode
# instead of compiling it on every (cold) start.
_BOOT: Final = (
    f"import sys; sys.path.insert(0, {SANDBOX_WORKER_DIR!r}); import _worker; "
    f"sys.path.remove({SANDBOX_WORKER_DIR!r}); _worker.main(sys.argv)"
)


def passwd_lines(uid: int) -> tuple[str, str]:
    """/etc/passwd and /etc/group for the sandbox: root, the sandbox user and nobody."""
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"sandbox:x:{uid}:{uid}:Kelpie sandbox:/tmp:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n"
    return passwd, group


def command(tools: Tools, launch: Launch) -> list[str]:
    assert launch.uid != 0, "sandboxed code must never be host root"
    assert (launch.uid is None) == (launch.holder_pid is None)
    line: list[str] = []
    if launch.cgroup_procs:
        line += [tools.shell, "-c", _JOIN_CGROUPS, "kelpie-sandbox"]
        line += [str(len(launch.cgroup_procs)), *launch.cgroup_procs]
    if launch.holder_pid is not None:
        line += [tools.nsenter, f"--target={launch.holder_pid}", "--mount", "--"]
        # A pid namespace around bubblewrap whose init (its monitor) reaps everything on
        # exit: bubblewrap's monitor can exit before reaping the sandbox's own init, which
        # would leave that init a zombie for the host's init (slow, or never, in containers).
        line += [tools.unshare, "--pid", "--fork", "--kill-child", "--"]
    line += [tools.setpriv, "--pdeathsig=KILL", "--no-new-privs"]
    if launch.uid is not None:
        line += [f"--reuid={launch.uid}", f"--regid={launch.uid}", "--clear-groups"]
        line += ["--inh-caps=-all", "--bounding-set=-all"]
    line += [str(tools.bwrap), *_bwrap_args(launch)]
    line += ["--", launch.python, "-I", "-B", "-S", "-c", _BOOT]
    return [*line, *launch.worker_args]


def _bwrap_args(launch: Launch) -> list[str]:
    args = ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--disable-userns", "--assert-userns-disabled"]
    if not launch.network:
        args.append("--unshare-net")
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    args += ["--hostname", SANDBOX_HOSTNAME, "--clearenv"]
    for key, value in SANDBOX_BASE_ENVIRONMENT.items():
        args += ["--setenv", key, value]
    args += system_args()
    args += ["--ro-bind-data", str(launch.passwd_fd), "/etc/passwd"]
    args += ["--ro-bind-data", str(launch.group_fd), "/etc/group"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--perms", "1777", "--size", str(launch.tmp_bytes), "--tmpfs", "/tmp"]
    for bind in launch.binds:
        args += ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.dest]
    args += ["--seccomp", str(launch.seccomp_fd), "--chdir", "/tmp"]
    return args


def system_args() -> list[str]:
    """bubblewrap's arguments for the read-only system every sandbox sees: /usr, the root
    links into it and a few files of /etc (not passwd and group: each sandbox has its own)."""
    args: list[str] = []
    for directory in SYSTEM_DIRS:
        args += ["--ro-bind", directory, directory]
    for link in SYSTEM_ROOT_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args

"""Escape probes against the real process tier (`ProcessSandbox`, bubblewrap).

Each probe runs attacker code as a tool function inside the sandbox. The function returns
what it observed as JSON (e.g. `{"ok": false, "error": "PermissionError[EACCES]: ..."}`)
and the test asserts the attempt failed; where the host can check the fact itself (a file
did not appear, a listening socket saw no connection, no process was left behind) it does
that too. After every probe an autouse fixture runs a trivial job, which must succeed: the
host still serves. Probe code never returns the contents of what it manages to read, only
whether it could and whether a planted secret was in it.

One `ProcessSandbox` serves the module (per xdist worker), on an event loop of its own
(`asyncio.Runner`). Before it starts, the module plants secrets the sandbox must not reach:
a data directory in the host's /tmp (0755, with a 0644 secret file), a 0644 secret file in
/var/tmp, and a variable in the test process's `os.environ`. Its `root_dir` is a separate
temporary directory.

Read outside:
- test_read_etc_shadow: /etc/shadow and /etc/gshadow cannot be read.
- test_read_root_home: nothing of the host's /root is listed or readable.
- test_read_data_dir: the planted data dir is neither listed nor its secret read.
- test_read_host_tmp: the /var/tmp secret cannot be read; the host's /tmp entries are not
  visible in the sandbox's /tmp.
- test_read_host_environment: /proc/<host pid>/environ cannot be read; /proc/1/environ,
  /proc/self/environ, every other readable /proc/*/environ and `os.environ` inside do not
  hold the planted secret.

Write outside (the host checks that no file appeared and nothing changed):
- test_write_system_dirs: no new file in /usr, /usr/local/bin, /usr/lib, /etc, /var.
- test_write_host_tmp: a file the job makes in its /tmp, /var/tmp or /dev/shm does not
  appear in the host's.
- test_write_sandbox_root_dir: no new file in `root_dir` or any directory under it.
- test_write_data_dir: no new file in the data dir; its secret file cannot be opened for
  writing and is unchanged.
- test_write_server_files: no new file in the server's source package or the venv's
  site-packages (a .pth there would run in the host); no source, site-packages or
  pyvenv.cfg file can be opened for writing.
- test_write_anywhere: a sweep of every directory the job can see (but /proc, /sys, its
  /tmp) refuses a new file, and no file under /opt, /work, /root, /etc, ... opens for
  writing; nothing appeared on the host.

Another job's files:
- test_jobs_do_not_share_files: job A leaves uniquely named files in its /tmp, /dev/shm,
  cwd and home; later jobs (more of them than the pool has workers) see none of them.
- test_job_environment_stays_in_job: a job's `environment` secret reaches its own
  os.environ, but not a job running beside it (/proc/*/environ, cmdline, /tmp) nor any
  host process's command line or environment while it runs.

Network:
- test_only_loopback_interface: `socket.if_nameindex()` lists only `lo`.
- test_connect_to_host_loopback: a TCP connect to a server on the host's 127.0.0.1 fails
  and it accepted nothing; UDP datagrams sent to a host UDP socket on 127.0.0.1 never
  arrive.
- test_abstract_unix_socket_of_host: connecting to a host's abstract unix socket fails,
  and its listener accepted no connection.
- test_udp_route_unreachable: a UDP `connect()` to 192.0.2.1:53 fails with "Network is
  unreachable" (no packet is sent: a UDP connect only looks up a route).
- test_listening_port_unreachable_from_host: TCP and UDP ports the job listens on (at
  least one bind must work; Landlock refuses the TCP one) get no connection and no
  datagram from the host's 127.0.0.1 while the job waits on them.

Privilege:
- test_no_capabilities: CapEff, CapPrm, CapAmb are 0, NoNewPrivs is 1, Seccomp is 2.
- test_cannot_change_identity: setgroups fails; setuid(0)/setgid(0)/setresuid(0, 0, 0)
  fail unless the uid inside already is 0.
- test_setuid_programs_gain_nothing: su and sudo (where present) do not run anything with
  a capability or as uid 0 (no_new_privs).
- test_write_proc_sys_and_sys: no file of /proc/sys, /proc/sysrq-trigger or /sys can be
  opened for writing (nothing is ever written).
- test_mount_and_chroot: `mount()` of a tmpfs, a bind mount of /, read-write remounts of /
  and /usr, `umount2("/proc")` and `chroot` all fail.
- test_new_namespaces: `unshare()` of a user, mount, net, pid namespace, `clone()` and
  `clone3()` with CLONE_NEWUSER and `/usr/bin/unshare -Ur` all fail, in the job's process
  and in a fresh child.
- test_ptrace: PTRACE_ATTACH to pid 1 and to the parent fails; /proc/1/mem cannot be
  opened.
- test_host_pid_invisible: `os.kill(host_pid, 0)` raises ProcessLookupError or
  PermissionError.
- test_pid_namespace: /proc lists only a few pids, not the host's.

Resources (each ends with an error result within its timeout plus a few seconds, and no
process of the job is left on the host):
- test_fork_bomb: forking in a loop, children too (timeout 5 s); no process of its uid
  is left.
- test_memory_bomb_one_allocation: a 10 GiB bytearray, every page touched.
- test_memory_bomb_chunks: appending 100 MB chunks.
- test_disk_fill: writing /tmp until it fails: ENOSPC or EFBIG, at most the tmp limit
  written, host free disk down by less than the tmp limit.
- test_output_flood: printing 100 MB to stdout, to stderr, and with os.write(1): the error
  names the output limit, what comes back stays near the limit, the call is quick.
- test_result_channel_flood: 1 GiB streamed into the job's sockets (its result channel)
  ends in an error, and the host process grows by less than 256 MiB.
- test_infinite_loop: `while True: pass` ends in a timeout error.
- test_orphan_cpu_spin: a detached child (new session, SIGTERM/SIGHUP ignored) spinning
  after the function returned, with its output pipes closed or inherited, is gone on the
  host once the call returns (none left with its marker or its uid; zombies aside).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import os
import secrets
import shutil
import socket
import sys
import sysconfig
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import psutil
import pytest

import kelpie
from kelpie.sandbox import ProcessSandbox, SandboxLimits, ToolJob, ToolJobResult
from kelpie.sandbox._types import SANDBOX_OUTPUT_BYTES_MAX, SANDBOX_TMP_BYTES_MAX

POOL_SIZE: Final = 2
# Seconds past a job's own timeout that the host may take to end it and answer.
END_GRACE_S: Final = 5.0
# How long the host may take, after a call returned, to be rid of the job's processes.
REAP_GRACE_S: Final = 1.0
PROBE_TIMEOUT_S: Final = 20.0
# How many directories the write sweep may try before it stops.
SWEEP_DIRS_MAX: Final = 50_000
ENV_SECRET_NAME: Final = "SANDBOX_ESCAPE_PROBE_SECRET"
GIB: Final = 2**30
# How much the host process may grow while a job floods its result channel.
CHANNEL_FLOOD_HOST_GROWTH_MAX: Final = 256 * 2**20


# --- Probe code: each function below runs inside the sandbox, never on the host. Each
# job's source is `_error_text` plus one probe, so a probe imports what it uses itself.


def _error_text(exc: BaseException) -> str:
    import errno

    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, "?") if isinstance(code, int) else "-"
    return f"{type(exc).__name__}[{name}]: {exc}"


def ping(value: int) -> int:
    return value + 1


def probe_read(paths: list[str], dirs: list[str], secret: str) -> dict[str, object]:
    """Reads files and lists directories; says what worked, never what was read."""
    import os

    files: dict[str, object] = {}
    for path in paths:
        try:
            with open(path, "rb") as file:
                data = file.read(1 << 20)
        except OSError as exc:
            files[path] = {"ok": False, "error": _error_text(exc)}
        else:
            has_secret = bool(secret) and secret.encode() in data
            files[path] = {"ok": True, "bytes": len(data), "secret": has_secret}
    listings: dict[str, object] = {}
    for path in dirs:
        try:
            names = sorted(os.listdir(path))
        except OSError as exc:
            listings[path] = {"ok": False, "error": _error_text(exc)}
        else:
            listings[path] = {"ok": True, "names": names[:500]}
    return {"files": files, "dirs": listings}


def probe_environ(host_pid: int, secret: str) -> dict[str, object]:
    import os

    files: dict[str, object] = {}
    paths = [f"/proc/{host_pid}/environ", "/proc/1/environ", "/proc/self/environ"]
    try:
        paths += [f"/proc/{name}/environ" for name in os.listdir("/proc") if name.isdigit()]
    except OSError as exc:
        files["/proc"] = {"ok": False, "error": _error_text(exc)}
    for path in paths:
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as exc:
            files[path] = {"ok": False, "error": _error_text(exc)}
        else:
            files[path] = {"ok": True, "bytes": len(data), "secret": secret.encode() in data}
    in_environ = any(secret in value for value in os.environ.values())
    return {"files": files, "os_environ_has_secret": in_environ}


def probe_create(paths: list[str]) -> dict[str, object]:
    """Creates each file (never overwrites one)."""
    seen: dict[str, object] = {}
    for path in paths:
        try:
            with open(path, "x") as file:
                file.write("kelpie escape probe\n")
        except OSError as exc:
            seen[path] = {"ok": False, "error": _error_text(exc)}
        else:
            seen[path] = {"ok": True}
    return seen


def probe_open_for_writing(paths: list[str]) -> dict[str, object]:
    """Opens each existing file write-only and closes it again: nothing is written."""
    import os

    seen: dict[str, object] = {}
    for path in paths:
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError as exc:
            seen[path] = {"ok": False, "error": _error_text(exc)}
        else:
            os.close(fd)
            seen[path] = {"ok": True}
    return seen


def probe_write_sweep(
    name: str, skip: list[str], open_under: list[str], dirs_max: int
) -> dict[str, object]:
    """Tries to create `name` in every directory it can walk to (but `skip`), and to open
    every existing file under `open_under` for writing (nothing is ever written)."""
    import os

    made: list[str] = []
    opened: list[str] = []
    dirs = files = 0
    for top, dirnames, filenames in os.walk("/"):
        dirnames[:] = [d for d in dirnames if os.path.join(top, d) not in skip]
        dirs += 1
        if dirs > dirs_max:
            break
        try:
            fd = os.open(os.path.join(top, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError:
            pass
        else:
            os.close(fd)
            made.append(os.path.join(top, name))
        if not any(top == root or top.startswith(root + "/") for root in open_under):
            continue
        for filename in filenames:
            path = os.path.join(top, filename)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            files += 1
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                continue
            os.close(fd)
            opened.append(path)
    return {"dirs": dirs, "files": files, "made": made, "opened": opened}


def probe_hold_environment(name: str, wait_s: float) -> dict[str, object]:
    import os
    import time

    has_secret = bool(os.environ.get(name))
    time.sleep(wait_s)
    return {"has_secret": has_secret}


def probe_find_secret(secret: str) -> dict[str, object]:
    """Looks for `secret` in every process's environment and command line and in /tmp."""
    import os

    places = []
    for pid in (name for name in os.listdir("/proc") if name.isdigit()):
        for part in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as file:
                    if secret.encode() in file.read():
                        places.append(f"/proc/{pid}/{part}")
            except OSError:
                pass
    for top, _, filenames in os.walk("/tmp"):
        for filename in filenames:
            try:
                with open(os.path.join(top, filename), "rb") as file:
                    if secret.encode() in file.read(1 << 20):
                        places.append(os.path.join(top, filename))
            except OSError:
                pass
    return {"places": places}


def probe_leave_files(name: str) -> dict[str, object]:
    import os

    written: dict[str, object] = {}
    for folder in dict.fromkeys(["/tmp", "/dev/shm", os.getcwd(), os.path.expanduser("~")]):
        path = os.path.join(folder, name)
        try:
            with open(path, "x") as file:
                file.write("left by job A\n")
        except OSError as exc:
            written[path] = {"ok": False, "error": _error_text(exc)}
        else:
            written[path] = {"ok": True}
    return written


def probe_find_files(paths: list[str], name: str) -> dict[str, object]:
    import os

    found = [path for path in paths if os.path.lexists(path)]
    for folder in dict.fromkeys(["/tmp", "/dev/shm", os.getcwd(), os.path.expanduser("~")]):
        try:
            if name in os.listdir(folder):
                found.append(os.path.join(folder, name))
        except OSError:
            pass
    return {"found": sorted(set(found))}


def probe_interfaces() -> dict[str, object]:
    import socket

    return {"interfaces": [name for _, name in socket.if_nameindex()]}


def probe_connect_host(tcp_port: int, udp_port: int) -> dict[str, object]:
    """A TCP connect to, and UDP datagrams at, ports the host listens on at 127.0.0.1."""
    import socket

    seen: dict[str, object] = {}
    try:
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=2.0):
            pass
    except OSError as exc:
        seen["tcp connect"] = {"ok": False, "error": _error_text(exc)}
    else:
        seen["tcp connect"] = {"ok": True}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            for _ in range(3):
                sock.sendto(b"kelpie escape probe", ("127.0.0.1", udp_port))
        except OSError as exc:
            seen["udp send"] = {"sent": False, "error": _error_text(exc)}
        else:
            seen["udp send"] = {"sent": True}
    return seen


def probe_abstract_unix(name: str) -> dict[str, object]:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect("\0" + name)
        except OSError as exc:
            return {"ok": False, "error": _error_text(exc)}
    return {"ok": True}


def probe_udp_route() -> dict[str, object]:
    """Connects a UDP socket to TEST-NET-1 and sends nothing: only a route lookup."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 53))
        except OSError as exc:
            return {"ok": False, "error": _error_text(exc)}
    return {"ok": True}


def probe_listen(port: int, wait_s: float) -> dict[str, object]:
    """Listens on a TCP and a UDP port for `wait_s` seconds; says what arrived."""
    import select
    import socket
    import time

    seen: dict[str, object] = {"accepted": False, "received": False}
    sockets = []
    try:
        tcp = socket.create_server(("0.0.0.0", port))
    except OSError as exc:
        seen["tcp"] = {"listening": False, "error": _error_text(exc)}
    else:
        seen["tcp"] = {"listening": True}
        sockets.append(tcp)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("0.0.0.0", port))
    except OSError as exc:
        seen["udp"] = {"listening": False, "error": _error_text(exc)}
        udp.close()
    else:
        seen["udp"] = {"listening": True}
        sockets.append(udp)
    deadline = time.monotonic() + wait_s
    while sockets and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(sockets, [], [], left)
        for sock in readable:
            if sock.type == socket.SOCK_STREAM:
                connection, _ = sock.accept()
                connection.close()
                seen["accepted"] = True
            else:
                sock.recv(100)
                seen["received"] = True
    for sock in sockets:
        sock.close()
    return seen


def probe_identity() -> dict[str, object]:
    import os

    status: dict[str, str] = {}
    with open("/proc/self/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    keys = ["Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"]
    keys += ["Seccomp", "Seccomp_filters"]
    return {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "groups": os.getgroups(),
        "status": {key: status.get(key) for key in keys},
    }


def probe_change_identity() -> dict[str, object]:
    import os

    attempts: dict[str, Callable[[], None]] = {
        "setuid(0)": lambda: os.setuid(0),
        "setgid(0)": lambda: os.setgid(0),
        "setresuid(0,0,0)": lambda: os.setresuid(0, 0, 0),
        "setgroups([0])": lambda: os.setgroups([0]),
        "setgroups([])": lambda: os.setgroups([]),
    }
    seen: dict[str, object] = {"uid": os.getuid(), "euid": os.geteuid()}
    for name, attempt in attempts.items():
        try:
            attempt()
        except OSError as exc:
            seen[name] = {"ok": False, "error": _error_text(exc)}
        else:
            seen[name] = {"ok": True}
    return seen


def probe_setuid_programs() -> dict[str, object]:
    """Runs su and sudo (where present) to print their child's /proc status."""
    import os
    import subprocess

    commands = {
        "su": ["root", "-c", "cat /proc/self/status"],
        "sudo": ["-n", "cat", "/proc/self/status"],
    }
    seen: dict[str, object] = {"uid": os.getuid()}
    for program, args in commands.items():
        path = next(
            (p for p in (f"/usr/bin/{program}", f"/bin/{program}") if os.path.exists(p)), None
        )
        if path is None:
            seen[program] = {"present": False}
            continue
        try:
            done = subprocess.run(
                [path, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            seen[program] = {"present": True, "ran": False, "error": _error_text(exc)}
            continue
        fields = {}
        for line in done.stdout.decode(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key in ("Uid", "CapEff", "CapPrm"):
                fields[key] = value.strip()
        seen[program] = {
            "present": True,
            "ran": True,
            "returncode": done.returncode,
            "child": fields,
            "stderr": done.stderr.decode(errors="replace")[:300],
        }
    return seen


def probe_mount() -> dict[str, object]:
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
    ms_rdonly, ms_remount, ms_bind, ms_rec = 1, 32, 4096, 16384
    mounts = {
        "tmpfs on /tmp": (b"none", b"/tmp", b"tmpfs", 0),
        "proc on /tmp": (b"proc", b"/tmp", b"proc", 0),
        "bind / on /tmp": (b"/", b"/tmp", None, ms_bind | ms_rec),
        "remount / rw": (None, b"/", None, ms_remount | ms_bind),
        "remount /usr rw": (None, b"/usr", None, ms_remount | ms_bind),
        "remount /proc ro": (None, b"/proc", None, ms_remount | ms_bind | ms_rdonly),
    }
    seen: dict[str, object] = {}
    for name, (source, target, fstype, flags) in mounts.items():
        ctypes.set_errno(0)
        rc = libc.mount(source, target, fstype, flags, None)
        error = os.strerror(ctypes.get_errno())
        seen[name] = {"ok": True} if rc == 0 else {"ok": False, "error": error}
    ctypes.set_errno(0)
    rc = libc.umount2(b"/proc", 2)  # MNT_DETACH
    error = os.strerror(ctypes.get_errno())
    seen["umount2 /proc"] = {"ok": True} if rc == 0 else {"ok": False, "error": error}
    try:
        os.chroot("/tmp")
    except OSError as exc:
        seen["chroot /tmp"] = {"ok": False, "error": _error_text(exc)}
    else:
        seen["chroot /tmp"] = {"ok": True}
    return seen


def probe_namespaces() -> dict[str, object]:
    """Tries for new namespaces here and in a fresh single-threaded child."""
    import ctypes
    import json
    import os
    import subprocess
    import sys

    child = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NEWUSER, NEWNS, NEWNET, NEWPID = 0x10000000, 0x20000, 0x40000000, 0x20000000
seen = {}
def record(name, rc):
    if rc == 0:
        seen[name] = {"ok": True}
    else:
        seen[name] = {"ok": False, "error": os.strerror(ctypes.get_errno())}
for name, flag in (("user", NEWUSER), ("mount", NEWNS), ("net", NEWNET), ("pid", NEWPID)):
    pid = os.fork()
    if pid == 0:
        ctypes.set_errno(0)
        rc = libc.unshare(flag)
        os._exit(0 if rc == 0 else 100 + ctypes.get_errno())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    seen["unshare " + name] = (
        {"ok": True} if code == 0 else {"ok": False, "error": os.strerror(code - 100)}
    )
ctypes.set_errno(0)
rc = libc.syscall(56, ctypes.c_ulong(NEWUSER | 17), None, None, None, None)  # clone
if rc == 0:
    os._exit(0)
if rc > 0:
    os.waitpid(rc, 0)
record("clone NEWUSER", 0 if rc > 0 else -1)
args = (ctypes.c_uint64 * 11)(NEWUSER, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0)
ctypes.set_errno(0)
rc = libc.syscall(435, ctypes.byref(args), ctypes.c_size_t(64))  # clone3
if rc == 0:
    os._exit(0)
if rc > 0:
    os.waitpid(rc, 0)
record("clone3 NEWUSER", 0 if rc > 0 else -1)
print(json.dumps(seen))
"""
    seen: dict[str, object] = {}
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=10)
    try:
        seen.update({f"child: {k}": v for k, v in json.loads(done.stdout).items()})
    except ValueError:
        seen["child"] = {"ok": False, "error": done.stderr.decode(errors="replace")[-500:]}
    if os.path.exists("/usr/bin/unshare"):
        done = subprocess.run(["/usr/bin/unshare", "-Ur", "true"], capture_output=True, timeout=10)
        seen["/usr/bin/unshare -Ur"] = {
            "ok": done.returncode == 0,
            "error": done.stderr.decode(errors="replace")[:300],
        }
    # Last: once in a new user namespace, this process could not try the others.
    libc = ctypes.CDLL(None, use_errno=True)
    ctypes.set_errno(0)
    rc = libc.unshare(0x10000000)
    error = os.strerror(ctypes.get_errno())
    seen["in job: unshare user"] = {"ok": True} if rc == 0 else {"ok": False, "error": error}
    return seen


def probe_ptrace() -> dict[str, object]:
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    seen: dict[str, object] = {"pid": os.getpid(), "ppid": os.getppid()}
    for target in sorted({1, os.getppid()} - {0, os.getpid()}):
        ctypes.set_errno(0)
        rc = libc.ptrace(16, target, None, None)  # PTRACE_ATTACH
        if rc == 0:
            seen[f"attach {target}"] = {"ok": True}
            os.waitpid(target, 0x40000000)  # __WALL: wait for the stop
            libc.ptrace(17, target, None, None)  # PTRACE_DETACH
        else:
            seen[f"attach {target}"] = {"ok": False, "error": os.strerror(ctypes.get_errno())}
        try:
            with open(f"/proc/{target}/mem", "rb"):
                pass
        except OSError as exc:
            seen[f"open /proc/{target}/mem"] = {"ok": False, "error": _error_text(exc)}
        else:
            seen[f"open /proc/{target}/mem"] = {"ok": True}
    return seen


def probe_kill(host_pid: int) -> dict[str, object]:
    import os

    try:
        os.kill(host_pid, 0)
    except OSError as exc:
        return {"ok": False, "error": _error_text(exc), "type": type(exc).__name__}
    return {"ok": True}


def probe_processes(host_pid: int) -> dict[str, object]:
    import os

    pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    comms = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as file:
                comms[pid] = file.read().strip()
        except OSError:
            comms[pid] = "?"
    return {"pids": pids, "comms": comms, "host_pid_seen": os.path.exists(f"/proc/{host_pid}")}


def probe_fork_bomb(marker: str) -> None:
    import ctypes
    import os

    print(os.getuid(), flush=True)  # noqa: T201 (the host looks for this uid's processes)
    ctypes.CDLL(None).prctl(15, marker.encode(), 0, 0, 0)  # PR_SET_NAME, inherited
    while True:
        try:
            os.fork()
        except OSError:
            pass


def probe_memory_one_allocation() -> int:
    block = bytearray(10 * 2**30)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    return len(block)


def probe_memory_chunks() -> int:
    chunks = []
    for _ in range(100):  # 10 GB at most
        chunks.append(b"x" * 100_000_000)
    return len(chunks)


def probe_disk_fill(chunk: int, per_file: int) -> dict[str, object]:
    """Writes files of `per_file` bytes into /tmp until a write fails."""
    import os

    data = b"\0" * chunk
    written = 0
    index = 0
    while True:
        path = f"/tmp/fill-{index}"
        index += 1
        try:
            with open(path, "wb") as file:
                for _ in range(per_file // chunk):
                    file.write(data)
                    file.flush()
                    written += chunk
        except OSError as exc:
            return {"ok": False, "error": _error_text(exc), "written": written}
        if written > 64 * 2**30:
            return {"ok": True, "written": written}
        os.sync()


def probe_print_flood(stream: str) -> str:
    import os
    import sys

    line = "x" * (2**20 - 1)
    for _ in range(100):
        if stream == "stdout":
            print(line)  # noqa: T201
        elif stream == "stderr":
            print(line, file=sys.stderr)  # noqa: T201
        else:
            os.write(1, line.encode() + b"\n")
    return "flooded"


def probe_channel_flood(total: int) -> str:
    """Streams `total` bytes into every socket the job's process holds (its result channel
    among them), without ever holding more than 1 MiB."""
    import os

    sockets = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if int(name) > 2 and os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                sockets.append(int(name))
        except OSError:
            pass
    chunk = b"x" * 2**20
    for _ in range(total // len(chunk)):
        for fd in sockets:
            os.write(fd, chunk)
    return f"flooded {sockets}"


def probe_infinite_loop() -> None:
    while True:
        pass


def probe_orphan_spin(marker: str, keep_pipes: bool) -> dict[str, object]:
    """Leaves a spinning child behind, once it is seen running under its marker name."""
    import os
    import subprocess
    import sys
    import time

    spin = (
        "import ctypes, signal, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
        "while True:\n"
        "    pass\n"
    )
    pipes = None if keep_pipes else subprocess.DEVNULL
    child = subprocess.Popen(
        [sys.executable, "-c", spin, marker],
        stdin=subprocess.DEVNULL,
        stdout=pipes,
        stderr=pipes,
        start_new_session=True,
    )
    running = False
    deadline = time.monotonic() + 5
    while not running and time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/comm") as comm:
            running = comm.read().strip() == marker
        time.sleep(0.01)
    return {"spawned": child.pid, "running": running, "uid": os.getuid()}


# --- The host side.


@dataclasses.dataclass(frozen=True)
class Planted:
    """What the module plants on the host before the sandbox starts."""

    secret: str
    data_dir: Path
    data_secret: Path
    var_tmp_secret: Path
    env_secret: str


class Prober:
    """The module's sandbox on its own event loop."""

    def __init__(self, runner: asyncio.Runner, sandbox: ProcessSandbox, root_dir: Path) -> None:
        self.runner = runner
        self.sandbox = sandbox
        self.root_dir = root_dir

    def job(
        self, probe: Callable[..., object], limits: SandboxLimits | None = None, **arguments: Any
    ) -> ToolJob:
        source = "\n\n".join(
            textwrap.dedent(inspect.getsource(function)) for function in (_error_text, probe)
        )
        return ToolJob(
            source_code=source,
            function_name=probe.__name__,
            arguments=arguments,
            limits=limits or SandboxLimits(timeout_s=PROBE_TIMEOUT_S),
        )

    def run(
        self, probe: Callable[..., object], limits: SandboxLimits | None = None, **arguments: Any
    ) -> ToolJobResult:
        return self.runner.run(self.sandbox.run(self.job(probe, limits, **arguments)))

    def timed(
        self, probe: Callable[..., object], limits: SandboxLimits, **arguments: Any
    ) -> tuple[ToolJobResult, float]:
        started = time.monotonic()
        result = self.run(probe, limits, **arguments)
        return result, time.monotonic() - started

    def observe(self, probe: Callable[..., object], **arguments: Any) -> dict[str, Any]:
        """Runs a probe that reports what it saw; the report must come back as JSON."""
        result = self.run(probe, **arguments)
        assert result.status == "success", describe(result)
        assert isinstance(result.func_return, dict), describe(result)
        return result.func_return


def describe(result: ToolJobResult) -> str:
    fields = dataclasses.asdict(result)
    for stream in ("stdout", "stderr"):
        text = fields[stream]
        if len(text) > 600:
            fields[stream] = text[:300] + f"…[{len(text)} chars]…" + text[-300:]
    return json.dumps(fields, default=str, indent=1)


def got_through(seen: Mapping[str, Any]) -> dict[str, Any]:
    """The attempts in a probe's report that worked."""
    return {
        name: outcome
        for name, outcome in seen.items()
        if isinstance(outcome, dict) and outcome.get("ok")
    }


def left_behind(marker: str, uid: int | None) -> list[str]:
    """Host processes whose name or command line holds `marker`, or that run as `uid`.
    Zombies do not count: they run nothing, and the host's init reaps the sandbox's
    inner processes when their parent is killed."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines()
            )
            owner = int(status["Uid"].split()[0])
            state = status["State"].strip()
        except (OSError, KeyError, ValueError):
            continue
        if state.startswith("Z"):
            continue
        if marker in comm or marker in cmdline or owner == uid:
            found.append(
                f"pid {entry.name} ppid {status['PPid'].strip()} uid {owner} state {state} "
                f"comm {comm!r} cmdline {cmdline[:200]!r}"
            )
    return found


def host_places_of(secret: str) -> set[str]:
    """The host processes' command lines and environments that hold `secret`."""
    places = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for part in ("cmdline", "environ"):
            with contextlib.suppress(OSError):
                if secret.encode() in (entry / part).read_bytes():
                    places.add(f"{entry}/{part}")
    return places


def assert_nothing_left(marker: str, uid: int | None = None) -> None:
    """After a call, nothing of it runs on the host (within REAP_GRACE_S)."""
    deadline = time.monotonic() + REAP_GRACE_S
    while (left := left_behind(marker, uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes of the job outlived it on the host: {left}"


def accepted_connection(server: socket.socket) -> str | None:
    """Whoever connected to `server` and is waiting to be accepted, if anyone."""
    server.setblocking(False)
    try:
        connection, peer = server.accept()
    except BlockingIOError:
        return None
    connection.close()
    return repr(peer)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def remove_if_there(paths: list[Path]) -> list[Path]:
    """Deletes the files a hole let the sandbox make; returns them for the failure message."""
    there = [path for path in paths if path.exists()]
    for path in there:
        path.unlink()
    return there


@pytest.fixture(scope="module")
def planted() -> Iterator[Planted]:
    secret = secrets.token_hex(16)
    data_dir = Path(tempfile.mkdtemp(prefix="kelpie-escape-data-"))
    data_dir.chmod(0o755)
    data_secret = data_dir / "secret.txt"
    data_secret.write_text(secret)
    data_secret.chmod(0o644)
    fd, var_tmp_name = tempfile.mkstemp(prefix="kelpie-escape-", dir="/var/tmp")
    os.write(fd, secret.encode())
    os.close(fd)
    var_tmp_secret = Path(var_tmp_name)
    var_tmp_secret.chmod(0o644)
    env_secret = secrets.token_hex(16)
    os.environ[ENV_SECRET_NAME] = env_secret
    try:
        yield Planted(secret, data_dir, data_secret, var_tmp_secret, env_secret)
    finally:
        os.environ.pop(ENV_SECRET_NAME, None)
        var_tmp_secret.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def prober(planted: Planted) -> Iterator[Prober]:
    root_dir = Path(tempfile.mkdtemp(prefix="kelpie-escape-root-"))
    try:
        with asyncio.Runner() as runner:
            sandbox = ProcessSandbox(root_dir=root_dir, pool_size=POOL_SIZE)
            runner.run(sandbox.start())
            try:
                prober = Prober(runner, sandbox, root_dir)
                first = prober.run(ping, value=0)
                if sandbox.unavailable_reason is not None:
                    pytest.fail(f"the sandbox is unavailable: {sandbox.unavailable_reason}")
                assert first.status == "success", describe(first)
                yield prober
            finally:
                runner.run(sandbox.close())
    finally:
        shutil.rmtree(root_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def still_serves(prober: Prober) -> Iterator[None]:
    """After every probe, the sandbox still runs a trivial job."""
    yield
    result = prober.run(ping, value=41)
    assert result.status == "success", f"the host no longer serves: {describe(result)}"
    assert result.func_return == 42, describe(result)


# --- Read outside.


def test_read_etc_shadow(prober: Prober) -> None:
    seen = prober.observe(probe_read, paths=["/etc/shadow", "/etc/gshadow"], dirs=[], secret="")
    assert not got_through(seen["files"]), seen


def test_read_root_home(prober: Prober) -> None:
    # The Python the server runs on may live under /root (pyenv): the sandbox may show it.
    interpreter = {
        path.relative_to("/root").parts[0]
        for path in (Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve())
        if path.is_relative_to("/root") and path != Path("/root")
    }
    host_names = sorted(set(os.listdir("/root")) - interpreter)
    paths = ["/root/.bashrc", "/root/.profile"] + [f"/root/{name}" for name in host_names]
    seen = prober.observe(probe_read, paths=paths, dirs=["/root"], secret="")
    assert not got_through(seen["files"]), seen
    listing = seen["dirs"]["/root"]
    if listing["ok"]:
        assert not set(listing["names"]) & set(host_names), listing


def test_read_data_dir(prober: Prober, planted: Planted) -> None:
    data_dir = str(planted.data_dir)
    seen = prober.observe(
        probe_read,
        paths=[str(planted.data_secret)],
        dirs=[data_dir, str(planted.data_dir.parent)],
        secret=planted.secret,
    )
    assert not got_through(seen["files"]), seen
    assert not seen["dirs"][data_dir]["ok"], seen
    parent = seen["dirs"][str(planted.data_dir.parent)]
    assert not parent["ok"] or planted.data_dir.name not in parent["names"], seen


def test_read_host_tmp(prober: Prober, planted: Planted) -> None:
    seen = prober.observe(
        probe_read,
        paths=[str(planted.var_tmp_secret)],
        dirs=["/tmp", "/var/tmp"],
        secret=planted.secret,
    )
    assert not got_through(seen["files"]), seen
    for folder, planted_name in (
        ("/tmp", planted.data_dir.name),
        ("/var/tmp", planted.var_tmp_secret.name),
    ):
        listing = seen["dirs"][folder]
        assert not listing["ok"] or planted_name not in listing["names"], (folder, listing)


def test_read_host_environment(prober: Prober, planted: Planted) -> None:
    host_pid = os.getpid()
    seen = prober.observe(probe_environ, host_pid=host_pid, secret=planted.env_secret)
    assert seen["os_environ_has_secret"] is False, seen
    files = seen["files"]
    assert not files[f"/proc/{host_pid}/environ"]["ok"], files
    leaks = {path: outcome for path, outcome in files.items() if outcome.get("secret")}
    assert not leaks, f"the host's environment is readable inside: {leaks}"


# --- Write outside.


def test_write_system_dirs(prober: Prober) -> None:
    name = unique("kelpie-escape")
    targets = [Path(folder) / name for folder in ("/usr", "/usr/local/bin", "/usr/lib", "/etc")]
    targets.append(Path("/var") / name)
    seen = prober.observe(probe_create, paths=[str(path) for path in targets])
    made = remove_if_there(targets)
    assert not made, f"files appeared on the host: {made}"
    assert not got_through(seen), seen


def test_write_host_tmp(prober: Prober) -> None:
    name = unique("kelpie-escape")
    targets = [Path(folder) / name for folder in ("/tmp", "/var/tmp", "/dev/shm")]
    prober.observe(probe_create, paths=[str(path) for path in targets])
    made = remove_if_there(targets)
    assert not made, f"files appeared in the host's temporary directories: {made}"


def test_write_sandbox_root_dir(prober: Prober) -> None:
    name = unique("kelpie-escape")
    folders = [prober.root_dir]
    folders += sorted(path for path in prober.root_dir.rglob("*") if path.is_dir())[:200]
    seen = prober.observe(probe_create, paths=[str(folder / name) for folder in folders])
    made = remove_if_there(list(prober.root_dir.rglob(name)))
    assert not made, f"files appeared in the sandbox's root_dir: {made}"
    assert not got_through(seen), seen


def test_write_data_dir(prober: Prober, planted: Planted) -> None:
    name = unique("kelpie-escape")
    created = prober.observe(probe_create, paths=[str(planted.data_dir / name)])
    opened = prober.observe(probe_open_for_writing, paths=[str(planted.data_secret)])
    made = remove_if_there([planted.data_dir / name])
    assert not made, f"a file appeared in the data dir: {made}"
    assert planted.data_secret.read_text() == planted.secret
    assert not got_through(created), created
    assert not got_through(opened), opened


def test_write_server_files(prober: Prober) -> None:
    name = unique("kelpie_escape")
    package_dir = Path(kelpie.__file__).resolve().parent
    site_packages = Path(sysconfig.get_paths()["purelib"])
    venv_config = Path(sysconfig.get_paths()["data"]) / "pyvenv.cfg"
    new_files = [package_dir / f"{name}.py", site_packages / f"{name}.pth"]
    existing = [package_dir / "__init__.py", Path(pytest.__file__), venv_config]
    existing = [path for path in existing if path.exists()]
    before = {path: path.stat() for path in existing}
    created = prober.observe(probe_create, paths=[str(path) for path in new_files])
    opened = prober.observe(probe_open_for_writing, paths=[str(path) for path in existing])
    made = remove_if_there(new_files)
    assert not made, f"files appeared among the server's code: {made}"
    for path, stat in before.items():
        now = path.stat()
        assert (now.st_size, now.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns), path
    assert not got_through(created), created
    assert not got_through(opened), opened


def test_write_anywhere(prober: Prober) -> None:
    """Every directory the job can see, but /proc, /sys and its own /tmp, refuses a new
    file; no file outside /usr can be opened for writing."""
    name = unique("kelpie-escape")
    seen = prober.observe(
        probe_write_sweep,
        name=name,
        skip=["/proc", "/sys", "/tmp"],
        open_under=["/opt", "/work", "/root", "/etc", "/var", "/home", "/srv", "/run"],
        dirs_max=SWEEP_DIRS_MAX,
    )
    # Where a new file would land on the host: the same path (the sandbox binds /usr and
    # the venv at their own paths), the server's source tree (the worker's code is bound
    # from it) and root_dir (pip environments).
    host_made = [Path(path) for path in seen["made"]]
    host_made += [Path(folder) / name for folder in ("/", "/usr", "/etc", "/opt", "/work")]
    host_made += [Path(sys.prefix) / name, Path(sysconfig.get_paths()["purelib"]) / name]
    host_made += list(Path(kelpie.__file__).resolve().parent.rglob(name))
    host_made += list(prober.root_dir.rglob(name))
    made = remove_if_there(host_made)
    assert not made, f"files appeared on the host: {made}"
    assert seen["dirs"] > 100, f"the sweep saw too little to mean anything: {seen}"
    assert not seen["made"], f"the job created files outside /tmp: {seen['made']}"
    assert not seen["opened"], f"the job could open these for writing: {seen['opened']}"


# --- Another job's files.


def test_jobs_do_not_share_files(prober: Prober) -> None:
    name = unique("kelpie-job-a")
    written = prober.observe(probe_leave_files, name=name)
    assert written[f"/tmp/{name}"]["ok"], f"job A could not write its own /tmp: {written}"
    paths = [path for path, outcome in written.items() if outcome["ok"]]
    for _ in range(POOL_SIZE + 1):
        seen = prober.observe(probe_find_files, paths=paths, name=name)
        assert seen["found"] == [], f"a later job saw job A's files: {seen}"


def test_job_environment_stays_in_job(prober: Prober) -> None:
    """A job's `environment` (its agent's secrets) reaches its own os.environ only: not
    another job running at the same time, nor any host process's command line or
    environment."""
    name, secret = "KELPIE_PROBE_TOKEN", secrets.token_hex(16)
    holder = dataclasses.replace(
        prober.job(probe_hold_environment, name=name, wait_s=1.5), environment={name: secret}
    )
    finder = prober.job(probe_find_secret, secret=secret)

    async def scenario() -> tuple[ToolJobResult, ToolJobResult, list[str]]:
        holding = asyncio.ensure_future(prober.sandbox.run(holder))
        await asyncio.sleep(0.3)
        finding = asyncio.ensure_future(prober.sandbox.run(finder))
        on_host: set[str] = set()
        while not holding.done():
            on_host |= host_places_of(secret)
            await asyncio.sleep(0.1)
        return await holding, await finding, sorted(on_host)

    held, found, on_host = prober.runner.run(scenario())
    assert held.status == "success", describe(held)
    assert held.func_return == {"has_secret": True}, describe(held)
    assert found.status == "success", describe(found)
    assert found.func_return["places"] == [], describe(found)
    assert not on_host, f"the job's secret shows in host processes: {on_host}"


# --- Network.


def test_only_loopback_interface(prober: Prober) -> None:
    seen = prober.observe(probe_interfaces)
    assert set(seen["interfaces"]) <= {"lo"}, seen


def test_connect_to_host_loopback(prober: Prober) -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        udp.bind(("127.0.0.1", 0))
        udp.setblocking(False)
        seen = prober.observe(
            probe_connect_host, tcp_port=tcp.getsockname()[1], udp_port=udp.getsockname()[1]
        )
        accepted = accepted_connection(tcp)
        with contextlib.suppress(BlockingIOError):
            datagram, peer = udp.recvfrom(100)
            pytest.fail(f"the host's UDP socket got {datagram!r} from {peer}")
    assert accepted is None, f"the host's TCP server accepted a connection from {accepted}"
    assert not seen["tcp connect"]["ok"], seen


def test_abstract_unix_socket_of_host(prober: Prober) -> None:
    name = unique("kelpie-escape")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        seen = prober.observe(probe_abstract_unix, name=name)
        accepted = accepted_connection(server)
    assert accepted is None, f"the host's abstract socket accepted a connection: {accepted}"
    assert not seen["ok"], seen


def test_udp_route_unreachable(prober: Prober) -> None:
    seen = prober.observe(probe_udp_route)
    assert not seen["ok"], seen
    assert "Network is unreachable" in seen["error"], seen


def test_listening_port_unreachable_from_host(prober: Prober) -> None:
    port = free_port()
    job = prober.job(probe_listen, port=port, wait_s=2.0)

    async def scenario() -> tuple[ToolJobResult, list[str]]:
        running = asyncio.ensure_future(prober.sandbox.run(job))
        reached: list[str] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.connect(("127.0.0.1", port))
            while not running.done():
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    pass
                else:
                    reached.append(f"connected to 127.0.0.1:{port}")
                    writer.close()
                    await writer.wait_closed()
                with contextlib.suppress(OSError):  # ECONNREFUSED from an earlier datagram
                    udp.send(b"kelpie escape probe")
                await asyncio.sleep(0.05)
        return await running, reached

    result, reached = prober.runner.run(scenario())
    assert result.status == "success", describe(result)
    seen = result.func_return
    assert not reached, f"the host reached the job's port: {reached}"
    assert not seen["accepted"], seen
    assert not seen["received"], seen
    # Landlock may refuse the TCP bind; the UDP port still tests the network namespace.
    listening = [kind for kind in ("tcp", "udp") if seen[kind]["listening"]]
    assert listening, f"the job could listen on no port, so this proved nothing: {seen}"


# --- Privilege.


def test_no_capabilities(prober: Prober) -> None:
    seen = prober.observe(probe_identity)
    status = seen["status"]
    for key in ("CapEff", "CapPrm", "CapAmb"):
        assert int(status[key], 16) == 0, seen
    assert status["NoNewPrivs"] == "1", seen
    assert status["Seccomp"] == "2", seen


def test_cannot_change_identity(prober: Prober) -> None:
    seen = prober.observe(probe_change_identity)
    assert not seen["setgroups([0])"]["ok"], seen
    assert not seen["setgroups([])"]["ok"], seen
    if seen["uid"] != 0:
        assert not got_through(seen), seen


def test_setuid_programs_gain_nothing(prober: Prober) -> None:
    seen = prober.observe(probe_setuid_programs)
    for program in ("su", "sudo"):
        outcome = seen[program]
        if not outcome.get("ran"):
            continue
        child = outcome["child"]
        if "CapEff" in child:
            assert int(child["CapEff"], 16) == 0, (program, seen)
        if "Uid" in child and seen["uid"] != 0:
            assert child["Uid"].split()[1] != "0", (program, seen)


def test_write_proc_sys_and_sys(prober: Prober) -> None:
    paths = [
        "/proc/sys/kernel/core_pattern",
        "/proc/sys/kernel/modprobe",
        "/proc/sys/vm/drop_caches",
        "/proc/sys/kernel/hostname",
        "/proc/sysrq-trigger",
        "/sys/kernel/uevent_helper",
        "/sys/power/state",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/fs/cgroup/cgroup.procs",
    ]
    seen = prober.observe(probe_open_for_writing, paths=paths)
    assert not got_through(seen), seen


def test_mount_and_chroot(prober: Prober) -> None:
    seen = prober.observe(probe_mount)
    assert not got_through(seen), seen


def test_new_namespaces(prober: Prober) -> None:
    seen = prober.observe(probe_namespaces)
    assert "child" not in seen, seen
    assert any(name.startswith("child: unshare user") for name in seen), seen
    assert not got_through(seen), seen


def test_ptrace(prober: Prober) -> None:
    seen = prober.observe(probe_ptrace)
    assert not got_through({k: v for k, v in seen.items() if isinstance(v, dict)}), seen


def test_host_pid_invisible(prober: Prober) -> None:
    seen = prober.observe(probe_kill, host_pid=os.getpid())
    assert not seen["ok"], seen
    assert seen["type"] in ("ProcessLookupError", "PermissionError"), seen


def test_pid_namespace(prober: Prober) -> None:
    seen = prober.observe(probe_processes, host_pid=os.getpid())
    assert not seen["host_pid_seen"], seen
    assert len(seen["pids"]) <= 10, seen


# --- Resources.


def assert_ended_in_error(result: ToolJobResult, elapsed: float, limits: SandboxLimits) -> None:
    assert result.status == "error", describe(result)
    assert elapsed < limits.timeout_s + END_GRACE_S, f"took {elapsed:.1f} s: {describe(result)}"


def test_fork_bomb(prober: Prober) -> None:
    marker = unique("kf")[:15]
    limits = SandboxLimits(timeout_s=5)
    result, elapsed = prober.timed(probe_fork_bomb, limits, marker=marker)
    assert_ended_in_error(result, elapsed, limits)
    uid = int(result.stdout.split()[0])
    assert uid != 0, describe(result)
    assert_nothing_left(marker, uid)


def test_memory_bomb_one_allocation(prober: Prober) -> None:
    limits = SandboxLimits(timeout_s=10)
    result, elapsed = prober.timed(probe_memory_one_allocation, limits)
    assert_ended_in_error(result, elapsed, limits)


def test_memory_bomb_chunks(prober: Prober) -> None:
    limits = SandboxLimits(timeout_s=10)
    result, elapsed = prober.timed(probe_memory_chunks, limits)
    assert_ended_in_error(result, elapsed, limits)


def test_disk_fill(prober: Prober) -> None:
    limits = SandboxLimits(timeout_s=15)
    free_before = shutil.disk_usage("/").free
    result, elapsed = prober.timed(probe_disk_fill, limits, chunk=2**20, per_file=16 * 2**20)
    free_after = shutil.disk_usage("/").free
    assert elapsed < limits.timeout_s + END_GRACE_S, describe(result)
    if result.status == "success":
        seen = result.func_return
        assert not seen["ok"], f"/tmp never filled up: {seen}"
        assert "ENOSPC" in seen["error"] or "EFBIG" in seen["error"], seen
        assert seen["written"] <= SANDBOX_TMP_BYTES_MAX, seen
    assert free_before - free_after < SANDBOX_TMP_BYTES_MAX, (free_before, free_after)


@pytest.mark.parametrize("stream", ["stdout", "stderr", "fd1"])
def test_output_flood(prober: Prober, stream: str) -> None:
    limits = SandboxLimits(timeout_s=20)
    result, elapsed = prober.timed(probe_print_flood, limits, stream=stream)
    assert result.status == "error", describe(result)
    assert result.error is not None, describe(result)
    # It names the limit, e.g. "Tool printed more than 1 MiB to stdout".
    assert f"{limits.output_bytes // 2**20} MiB" in result.error, describe(result)
    assert ("stderr" if stream == "stderr" else "stdout") in result.error, describe(result)
    for text in (result.stdout, result.stderr):
        assert len(text.encode()) <= SANDBOX_OUTPUT_BYTES_MAX + 4096, len(text)
    assert elapsed < 10, f"took {elapsed:.1f} s: {describe(result)}"


def test_result_channel_flood(prober: Prober) -> None:
    limits = SandboxLimits(timeout_s=10)
    job = prober.job(probe_channel_flood, limits, total=GIB)
    host = psutil.Process()

    async def scenario() -> tuple[ToolJobResult, int]:
        baseline = host.memory_info().rss
        running = asyncio.ensure_future(prober.sandbox.run(job))
        growth = 0
        while not running.done():
            growth = max(growth, host.memory_info().rss - baseline)
            await asyncio.sleep(0.02)
        return await running, growth

    started = time.monotonic()
    result, growth = prober.runner.run(scenario())
    elapsed = time.monotonic() - started
    assert_ended_in_error(result, elapsed, limits)
    assert growth < CHANNEL_FLOOD_HOST_GROWTH_MAX, f"the host grew by {growth} bytes"


def test_infinite_loop(prober: Prober) -> None:
    limits = SandboxLimits(timeout_s=2)
    result, elapsed = prober.timed(probe_infinite_loop, limits)
    assert_ended_in_error(result, elapsed, limits)
    assert result.error is not None, describe(result)
    assert "time" in result.error.lower(), describe(result)


@pytest.mark.parametrize("keep_pipes", [False, True], ids=["pipes-closed", "pipes-inherited"])
def test_orphan_cpu_spin(prober: Prober, keep_pipes: bool) -> None:
    marker = unique("ko")[:15]
    limits = SandboxLimits(timeout_s=10)
    result, elapsed = prober.timed(probe_orphan_spin, limits, marker=marker, keep_pipes=keep_pipes)
    assert elapsed < limits.timeout_s + END_GRACE_S, describe(result)
    assert result.status == "success", describe(result)
    seen = result.func_return
    assert seen["running"], f"the child never ran, so this proved nothing: {seen}"
    assert_nothing_left(marker, seen["uid"])

"""The root step of a confined program's launch (stdlib only): in the program's own mount
namespace (a private child of the sandbox stage's), it mounts a small tmpfs on the stage's
`programs` directory and binds there the host paths this one program may see, so the
unprivileged bubblewrap after it can reach them (their host parents may be mode 0700, such
as /root). It then becomes the rest of its command line. Nothing of it is visible outside
that namespace, and it all disappears with it.

A path granted to the program (as opposed to the install prefix it runs from) is mounted
idmapped: the path's owner appears as the program's uid, so it can write there (when
granted read-write) and tools that insist on owning what they touch (git) accept it, while
files on disk keep their owner.

    python -I -S -B _program_stage.py DIR UID [--bind NAME SOURCE]... [--idmap NAME SOURCE]...
        -- PROGRAM ARG...
"""

from __future__ import annotations

import ctypes
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x00100000
_CLONE_NEWUSER = 0x10000000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_BIND = 0x1000
STAGE_TMPFS_OPTIONS = "mode=0755,size=64k"
EXIT_STAGE_FAILED = 125

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")
    return result


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            None if fstype is None else fstype.encode(),
            ctypes.c_ulong(flags),
            None if data is None else data.encode(),
        ),
        f"mount {source} on {target}",
    )


def _user_namespace(uid_map: str, gid_map: str) -> int:
    """An fd of a new user namespace with the given maps (made by a child that unshares
    and waits, while this process, root, writes its maps)."""
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_read)
        os.close(done_write)
        ok = _libc.unshare(_CLONE_NEWUSER) == 0
        os.write(ready_write, b"1" if ok else b"0")
        os.read(done_read, 1)
        os._exit(0)
    os.close(ready_write)
    os.close(done_read)
    try:
        if os.read(ready_read, 1) != b"1":
            raise OSError("could not make a user namespace for an idmapped mount")
        for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
            with open(f"/proc/{child}/{name}", "w") as file:
                file.write(text)
        return os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_write)
        os.close(ready_read)
        os.waitpid(child, 0)


def _idmapped_bind(source: str, target: str, uid: int) -> None:
    """Binds `source` on `target` with its owner (uid and gid) seen as `uid`."""
    info = os.stat(source)
    namespace = _user_namespace(f"{info.st_uid} {uid} 1\n", f"{info.st_gid} {uid} 1\n")
    tree = -1
    try:
        tree = _check(
            _libc.syscall(
                ctypes.c_long(_SYS_OPEN_TREE),
                ctypes.c_int(_AT_FDCWD),
                source.encode(),
                ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC),
            ),
            f"open_tree {source}",
        )
        attr = _MountAttr(attr_set=_MOUNT_ATTR_IDMAP, userns_fd=namespace)
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_MOUNT_SETATTR),
                ctypes.c_int(tree),
                b"",
                ctypes.c_uint(_AT_EMPTY_PATH),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"idmap {source}",
        )
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_MOVE_MOUNT),
                ctypes.c_int(tree),
                b"",
                ctypes.c_int(_AT_FDCWD),
                target.encode(),
                ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
            ),
            f"move_mount {source}",
        )
    finally:
        os.close(namespace)
        if tree >= 0:
            os.close(tree)


def main(argv: list[str]) -> None:
    try:
        split = argv.index("--")
    except ValueError:
        _fail("no program given")
    options, rest = argv[1:split], argv[split + 1 :]
    if len(options) < 2 or not rest:
        _fail("usage: DIR UID [--bind|--idmap NAME SOURCE]... -- PROGRAM ARG...")
    directory, uid = options[0], int(options[1])
    entries = options[2:]
    try:
        _mount(
            "kelpie-program-stage", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, STAGE_TMPFS_OPTIONS
        )
        for i in range(0, len(entries), 3):
            kind, name, source = entries[i : i + 3]
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"bad stage name {name!r}")
            target = os.path.join(directory, name)
            if os.path.isdir(source):
                os.mkdir(target, 0o755)
            else:
                os.close(
                    os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                )
            if kind == "--bind":
                _mount(source, target, None, _MS_BIND, None)
            elif kind == "--idmap":
                _idmapped_bind(source, target, uid)
            else:
                raise ValueError(f"unknown option {kind}")
    except (OSError, ValueError) as error:
        _fail(f"could not stage the program's paths: {error}")
    try:
        os.execv(rest[0], rest)
    except OSError as error:
        _fail(f"cannot run {rest[0]}: {error.strerror}")


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"kelpie sandbox: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_STAGE_FAILED)


if __name__ == "__main__":
    main(sys.argv)

"""Landlock through raw syscalls (stdlib ctypes, no package: the worker applies it to itself
inside the sandbox, and the host only asks for the ABI version).

The worker calls `restrict()` before it reads a job, so the code it then runs may read the
sandbox's bound system, write only its scratch directories, signal and reach (abstract unix
sockets) only processes of its own domain, and, with network off, neither bind nor
connect TCP ports."""

from __future__ import annotations

import ctypes
import os

# Typing names only for the checker: the worker imports this module inside the sandbox,
# where every import is start-up time of a cold call.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Final

# The same numbers on every architecture (the unified syscall table).
_SYS_CREATE_RULESET: Final = 444
_SYS_ADD_RULE: Final = 445
_SYS_RESTRICT_SELF: Final = 446
_CREATE_RULESET_VERSION: Final = 1
_RULE_PATH_BENEATH: Final = 1
_PR_SET_NO_NEW_PRIVS: Final = 38

_EXECUTE: Final = 1 << 0
_WRITE_FILE: Final = 1 << 1
_READ_FILE: Final = 1 << 2
_READ_DIR: Final = 1 << 3
_TRUNCATE: Final = 1 << 14
_IOCTL_DEV: Final = 1 << 15
_READ: Final = _EXECUTE | _READ_FILE | _READ_DIR
# Rights that make sense on a file (a rule on a non-directory may carry only these).
_FILE_RIGHTS: Final = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_NET_BIND_TCP: Final = 1 << 0
_NET_CONNECT_TCP: Final = 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET: Final = 1 << 0
_SCOPE_SIGNAL: Final = 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The kernel's Landlock ABI, 0 when Landlock is absent or disabled."""
    version = _libc.syscall(
        ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_size_t(0), ctypes.c_uint32(1)
    )
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    """Every filesystem right the ABI knows: handled rights are denied unless a rule allows."""
    last_bit = 16 if abi >= 5 else 15 if abi >= 3 else 14 if abi >= 2 else 13
    return (1 << last_bit) - 1


def _check(result: int, what: str) -> int:
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"landlock {what}: {os.strerror(error)}")
    return result


def restrict(
    *, read: Sequence[str], write_files: Sequence[str], read_write: Sequence[str], network: bool
) -> int:
    """Confines this process and its future children; returns the ABI used (0: none)."""
    abi = abi_version()
    if abi == 0:
        return 0
    fs = _fs_rights(abi)
    attr = _RulesetAttr(
        handled_access_fs=fs,
        handled_access_net=0 if network or abi < 4 else _NET_BIND_TCP | _NET_CONNECT_TCP,
        scoped=_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0,
    )
    attr_size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _check(
        _libc.syscall(
            ctypes.c_long(_SYS_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(attr_size),
            ctypes.c_uint32(0),
        ),
        "create_ruleset",
    )
    try:
        rules = (
            (read, _READ),
            (write_files, _READ | _WRITE_FILE | _TRUNCATE),
            (read_write, fs),
        )
        for paths, access in rules:
            for path in paths:
                _allow(ruleset, path, access & fs)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(
            _libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ruleset, ctypes.c_uint32(0)),
            "restrict_self",
        )
    finally:
        os.close(ruleset)
    return abi


def _allow(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            access &= _FILE_RIGHTS
        rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        _check(
            _libc.syscall(
                ctypes.c_long(_SYS_ADD_RULE),
                ruleset,
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint32(0),
            ),
            f"add_rule {path}",
        )
    finally:
        os.close(fd)

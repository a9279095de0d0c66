"""The seccomp filter, compiled on the host with libseccomp (through `pyseccomp`) and handed
to bubblewrap as BPF (`--seccomp FD`), which loads it just before it starts the worker: it
denies the syscalls that reach the kernel's riskier surfaces or would undo the sandbox."""

import errno
import os
from typing import Final

import pyseccomp

DENIED_SYSCALLS: Final = (
    # Looking into or steering other processes.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "process_madvise",
    # Mounts and namespaces (the sandbox's layout is final).
    "mount", "umount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    # Kernel keyrings, BPF, perf, userfaultfd, io_uring: large attack surface.
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # Whole-machine operations.
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl", "ioperm",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "vhangup", "lookup_dcookie", "fanotify_init", "uselib",
    "nfsservctl", "open_by_handle_at", "name_to_handle_at",
)  # fmt: skip
_CLONE_NAMESPACE_FLAGS: Final = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)
_TIOCSTI: Final = 0x5412
_TIOCLINUX: Final = 0x541C


def compile_filter() -> bytes:
    """The filter as BPF for the native architecture (other architectures' calls are killed)."""
    deny = pyseccomp.ERRNO(errno.EPERM)
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            continue  # not a syscall on this architecture
    for flag in _CLONE_NAMESPACE_FLAGS:
        rules.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc use clone.
    rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (_TIOCSTI, _TIOCLINUX):
        rules.add_rule(deny, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, request))
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as sink:
            rules.export_bpf(sink)
        with os.fdopen(read_end, "rb") as source:
            read_end = -1
            program = source.read()
    finally:
        if read_end >= 0:
            os.close(read_end)
    assert len(program) % 8 == 0, "BPF is a list of 8-byte instructions"
    assert program, "an empty filter would allow everything"
    return program

"""Host uids for sandboxed workers when the server runs as root: each live worker holds one
of its own, so nothing inside is ever host root and RLIMIT_NPROC counts only that worker.

Servers on one host never share uids: each claims a block of them by holding a lock file for
its lifetime (the kernel drops the lock when the process dies)."""

import contextlib
import fcntl
import os
from collections import deque
from pathlib import Path
from typing import Final

SANDBOX_UID_FIRST: Final = 61000
SANDBOX_UIDS_PER_SERVER: Final = 1000
SANDBOX_UID_BLOCKS_MAX: Final = 64
UID_LOCK_DIR: Final = Path("/run/lock")


class UidsExhausted(Exception):
    pass


class UidRange:
    def __init__(self, first: int, count: int, lock_fd: int | None = None) -> None:
        assert first > 0, "uid 0 is never a sandbox uid"
        assert count > 0
        self.first = first
        self.count = count
        self._lock_fd = lock_fd
        self._free = deque(range(first, first + count))
        self._taken: set[int] = set()

    @classmethod
    def claim(cls) -> "UidRange":
        """The first block of uids no other server on this host holds."""
        lock_dir = UID_LOCK_DIR if UID_LOCK_DIR.is_dir() else Path("/run")
        for block in range(SANDBOX_UID_BLOCKS_MAX):
            path = lock_dir / f"kelpie-sandbox-uids-{block}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            first = SANDBOX_UID_FIRST + block * SANDBOX_UIDS_PER_SERVER
            return cls(first, SANDBOX_UIDS_PER_SERVER, fd)
        raise UidsExhausted(f"{SANDBOX_UID_BLOCKS_MAX} servers already hold sandbox uids here")

    def release(self) -> None:
        """Gives the block back (the server's sandbox is closed)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def take(self) -> int:
        if not self._free:
            raise UidsExhausted(f"all {self.count} sandbox uids are in use")
        uid = self._free.popleft()
        self._taken.add(uid)
        return uid

    def give_back(self, uid: int) -> None:
        assert uid in self._taken, f"uid {uid} was not taken"
        self._taken.remove(uid)
        self._free.append(uid)

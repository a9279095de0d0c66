"""cgroup v1 memory and pids groups, one per worker, under a group of this server's own:
the kernel then holds each execution to its memory and process limits, tells when it was
OOM-killed, and lets the host kill every process it left behind."""

import contextlib
import errno
import os
import signal
from pathlib import Path
from typing import Final

CGROUP_MOUNT: Final = Path("/sys/fs/cgroup")
CONTROLLERS: Final = ("memory", "pids")


def _own_path(controller: str) -> str | None:
    """This process's group in a v1 hierarchy, from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


class CgroupRoot:
    """The server's own sandbox groups; `create()` answers None when it cannot make them."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        assert set(dirs) == set(CONTROLLERS)
        self.dirs = dirs
        self._next = 0

    @classmethod
    def create(cls, name: str) -> "CgroupRoot | None":
        dirs: dict[str, Path] = {}
        try:
            for controller in CONTROLLERS:
                own = _own_path(controller)
                mount = CGROUP_MOUNT / controller
                if own is None or not (mount / "cgroup.procs").exists():
                    return None
                directory = mount / own.lstrip("/") / name
                directory.mkdir(exist_ok=True)
                dirs[controller] = directory
        except OSError:
            for directory in dirs.values():
                with contextlib.suppress(OSError):
                    directory.rmdir()
            return None
        return cls(dirs)

    def new_group(self, memory_bytes: int, processes: int) -> "WorkerCgroup":
        while True:
            self._next += 1
            dirs = {c: d / f"w{self._next}" for c, d in self.dirs.items()}
            if not any(d.exists() for d in dirs.values()):  # a previous server's leftovers
                return WorkerCgroup(dirs, memory_bytes, processes)

    def remove(self) -> None:
        for directory in self.dirs.values():
            with contextlib.suppress(OSError):
                directory.rmdir()


class WorkerCgroup:
    def __init__(self, dirs: dict[str, Path], memory_bytes: int, processes: int) -> None:
        self.dirs = dirs
        for directory in dirs.values():
            directory.mkdir()
        try:
            self._memory_bytes = int((dirs["memory"] / "memory.limit_in_bytes").read_text())
            self.set_limits(memory_bytes, processes)
        except OSError:
            self.remove()
            raise

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs.values()]

    def set_limits(self, memory_bytes: int, processes: int) -> None:
        memory = self.dirs["memory"]
        if memory_bytes != self._memory_bytes:
            # memsw (memory + swap) must stay >= memory: order the writes by direction.
            files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            if memory_bytes > self._memory_bytes:
                files.reverse()
            for name in files:
                if (memory / name).exists():
                    (memory / name).write_text(str(memory_bytes))
            self._memory_bytes = memory_bytes
        (self.dirs["pids"] / "pids.max").write_text(str(processes))

    def oom_kills(self) -> int:
        try:
            text = (self.dirs["memory"] / "memory.oom_control").read_text()
        except OSError:
            return 0  # removed (or being removed): the sandbox was closed under the job
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> list[int]:
        try:
            text = (self.dirs["pids"] / "cgroup.procs").read_text()
        except OSError:
            return []  # removed, or being removed
        return [int(pid) for pid in text.split()]

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> bool:
        """Removes the groups once empty; False if processes are still dying."""
        if self.pids():
            self.kill_all()
            return False
        for directory in self.dirs.values():
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError as error:
                # A process that just left the pids group may still be leaving another.
                if error.errno == errno.EBUSY:
                    return False
                raise
        return True

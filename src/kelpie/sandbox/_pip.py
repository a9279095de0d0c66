"""Requirement environments: each distinct set of pip requirements is installed once into
`<root_dir>/pip/<sha256 of the set>` by pip running inside a sandbox (network on, only its
target directory writable: installing runs package code), then shared read-only by every
later job that names the set. Installs go to a temporary directory renamed when complete,
so an interrupted install is never taken for a finished one."""

import asyncio
import hashlib
import os
import re
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from kelpie.sandbox._bwrap import SANDBOX_PIP_DIR, SANDBOX_PIP_TARGET_DIR
from kelpie.sandbox._commands import run_command
from kelpie.sandbox._types import MIB, SandboxLimits, ToolJob, ToolJobResult

REQUIREMENT_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\[\]<>=!~,-]*")
PIP_INSTALL_LIMITS: Final = SandboxLimits(
    timeout_s=600.0, memory_bytes=1024 * MIB, file_bytes=512 * MIB
)
PIP_TMP_BYTES: Final = 512 * MIB
PIP_OUTPUT_LINES_QUOTED: Final = 12
# Host settings pip needs to reach its index (no paths: the sandbox would not see them).
PIP_FORWARDED_VARIABLES: Final = (
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT",
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
)  # fmt: skip
_TEMP_PREFIX: Final = ".partial-"
PIP_INSTALL_SOURCE: Final = textwrap.dedent(
    """
    import subprocess
    import sys

    def install(requirements, target):
        command = [sys.executable, "-m", "pip", "install", "--no-cache-dir",
                   "--disable-pip-version-check", "--no-input", "--no-warn-script-location",
                   "--target", target, *requirements]
        return subprocess.run(command).returncode
    """
)

Install = Callable[[ToolJob, Path], Awaitable[ToolJobResult]]


class RequirementError(Exception):
    """The message says why the job's requirements are not usable."""


def check_requirements(requirements: Sequence[str]) -> None:
    for requirement in requirements:
        if not REQUIREMENT_PATTERN.fullmatch(requirement):
            raise RequirementError(
                f"Invalid pip requirement {requirement!r}: only letters, digits and "
                "-_.[]<>=!~, are allowed, starting with a letter or digit"
            )


def environment_key(requirements: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(set(requirements))).encode()).hexdigest()


class PipEnvironments:
    def __init__(self, pip_dir: Path, install: Install, *, chown_to_root: bool) -> None:
        self._pip_dir = pip_dir
        self._install = install
        self._chown_to_root = chown_to_root
        self._locks: dict[str, asyncio.Lock] = {}
        self._attempt = 0

    async def sys_path(self, requirements: Sequence[str]) -> str:
        """The sandbox path of the set's site dir, installing it first if needed."""
        check_requirements(requirements)
        key = environment_key(requirements)
        final = self._pip_dir / key
        async with self._locks.setdefault(key, asyncio.Lock()):
            if not final.is_dir():
                await self._install_set(sorted(set(requirements)), final)
        return f"{SANDBOX_PIP_DIR}/{key}"

    async def _install_set(self, requirements: list[str], final: Path) -> None:
        self._attempt += 1
        partial = final.with_name(f"{_TEMP_PREFIX}{final.name}-{os.getpid()}-{self._attempt}")
        partial.mkdir()
        environment = {k: v for k, v in os.environ.items() if k in PIP_FORWARDED_VARIABLES}
        job = ToolJob(
            source_code=PIP_INSTALL_SOURCE,
            function_name="install",
            arguments={"requirements": requirements, "target": SANDBOX_PIP_TARGET_DIR},
            environment=environment,
            network=True,
            limits=PIP_INSTALL_LIMITS,
        )
        try:
            result = await self._install(job, partial)
            if result.status != "success" or result.func_return != 0:
                lines = (result.stderr or result.stdout).strip().splitlines()
                quoted = "\n".join(lines[-PIP_OUTPUT_LINES_QUOTED:])
                failure = result.error or f"pip exited with code {result.func_return}"
                raise RequirementError(
                    f"Could not install requirements {' '.join(requirements)}: "
                    f"{failure}\n{quoted}".rstrip()
                )
            if self._chown_to_root:
                await _run("chown", "-R", "-h", "-P", "0:0", str(partial))
            partial.rename(final)
        finally:
            if partial.exists():
                await _run("rm", "-rf", "--", str(partial))


async def _run(*command: str) -> None:
    finished = await run_command(*command)
    if finished.returncode != 0:
        raise RequirementError(f"{command[0]} failed: {finished.output.decode(errors='replace')}")

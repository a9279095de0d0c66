"""Short host commands the sandbox layer runs (bwrap --version, mkdir in the stage, chown).

One way to run them, so none is left behind: if the caller is cancelled or the time runs
out, the command is killed and reaped before the exception goes on. An unreaped child
outlives its event loop as a zombie and a `ResourceWarning` at garbage collection."""

import asyncio
import dataclasses
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    output: bytes  # stdout and stderr together, in the order written


async def run_command(
    *argv: str, timeout_s: float | None = None, env: Mapping[str, str] | None = None
) -> Finished:
    """Runs `argv` to its end with no input; raises OSError if it cannot start and
    TimeoutError past `timeout_s`, in both cases leaving no process behind."""
    assert argv, "no command"
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=None if env is None else dict(env),
    )
    try:
        async with asyncio.timeout(timeout_s):
            output, _ = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
        # Shielded so a second cancellation cannot leave the child unreaped.
        await asyncio.shield(process.wait())
        raise
    assert process.returncode is not None
    return Finished(returncode=process.returncode, output=output)

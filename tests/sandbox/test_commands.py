"""`run_command`, the one way the sandbox layer runs short host commands: it returns the
exit code and the output, and a command cut short (time out, or the caller cancelled) is
killed and reaped before the exception goes on, so no child outlives the call."""

import asyncio

import psutil
import pytest

from kelpie.sandbox._commands import run_command


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def test_a_command_gives_its_exit_code_and_output() -> None:
    finished = asyncio.run(run_command("/bin/sh", "-c", "echo out; echo err >&2; exit 3"))
    assert finished.returncode == 3
    assert finished.output == b"out\nerr\n"


def test_a_command_past_its_time_is_killed_and_reaped() -> None:
    before = _children()
    with pytest.raises(TimeoutError):
        asyncio.run(run_command("/bin/sleep", "30", timeout_s=0.2))
    assert _children() - before == set()


def test_a_cancelled_caller_leaves_no_command_behind() -> None:
    before = _children()

    async def scenario() -> None:
        task = asyncio.create_task(run_command("/bin/sleep", "30"))
        await asyncio.sleep(0.2)
        assert _children() - before, "the command did not start"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert _children() - before == set()


def test_a_program_that_does_not_exist_is_an_os_error() -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(run_command("/nonexistent/program"))

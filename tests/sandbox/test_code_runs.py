"""Code mode and workspaces on the real process sandbox: a snippet calls the host's tools
over its channel, its last expression is its result, and an agent's workspace is its working
directory, kept between executions, quota-checked, and no one else's."""

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from kelpie.sandbox import (
    MIB,
    HostCallAnswer,
    ProcessSandbox,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
    ToolStub,
    WorkspaceError,
    WorkspaceFileMissing,
    WorkspaceFull,
)

AGENT: Final = "agent-00000000-0000-4000-8000-00000000000a"
OTHER_AGENT: Final = "agent-00000000-0000-4000-8000-00000000000b"
QUOTA_BYTES: Final = 2 * MIB
# Code that finds the worker's own channel to the host (its fd is on the command line).
CHANNEL: Final = "import json, os, struct, sys\nfd = int(sys.argv[sys.argv.index('--fd') + 1])\n"


class Host:
    """The host's side of the channel: records calls and answers them like tools would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.notes: list[str] = []

    async def __call__(self, name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        self.calls.append((name, arguments))
        if name == "add_note":
            self.notes.append(arguments["text"])
            return HostCallAnswer(True, len(self.notes))
        if name == "lookup" and arguments.get("key") is None:
            return HostCallAnswer(False, "lookup needs a key")
        if name == "lookup":
            return HostCallAnswer(True, {"key": arguments["key"], "rows": [1, 2, 3]})
        return HostCallAnswer(False, f"Tool '{name}' is not available to this agent's code")


STUBS: Final = (
    ToolStub(name="add_note", parameters=("text",)),
    ToolStub(name="lookup", parameters=("key",)),
)


class Runner:
    def __init__(self, runner: asyncio.Runner, sandbox: ProcessSandbox) -> None:
        self.runner = runner
        self.sandbox = sandbox

    def code(
        self, source: str, host: Host | None = None, *, workspace: str | None = None, **job: Any
    ) -> ToolJobResult:
        tools = STUBS if host is not None else ()
        request = ToolJob(
            source_code=source, function_name=None, tools=tools, workspace=workspace, **job
        )
        return self.runner.run(self.sandbox.run(request, host))


@pytest.fixture(scope="module")
def run() -> Iterator[Runner]:
    root_dir = Path(tempfile.mkdtemp(prefix="kelpie-code-test-"))
    try:
        with asyncio.Runner() as runner:
            sandbox = ProcessSandbox(
                root_dir=root_dir, pool_size=2, workspace_bytes_max=QUOTA_BYTES
            )
            runner.run(sandbox.start())
            runner.run(sandbox.ready())
            assert sandbox.unavailable_reason is None, sandbox.unavailable_reason
            try:
                yield Runner(runner, sandbox)
            finally:
                runner.run(sandbox.close())
    finally:
        shutil.rmtree(root_dir, ignore_errors=True)


def test_the_last_expression_is_the_result_and_prints_are_the_output(run: Runner) -> None:
    result = run.code("total = sum(range(10))\nprint('summing')\ntotal * 2")
    assert result.status == "success", result
    assert result.func_return == 90
    assert result.stdout == "summing\n"


def test_a_snippet_that_raises_reports_the_exception_and_its_traceback(run: Runner) -> None:
    result = run.code("x = 1\nraise ValueError('bad kelp')")
    assert result.status == "error"
    assert result.error == "ValueError: bad kelp"
    assert result.traceback is not None
    assert "line 2" in result.traceback


def test_code_calls_tools_in_a_loop_and_reduces_locally(run: Runner) -> None:
    host = Host()
    source = (
        "counts = [add_note(f'note {i}') for i in range(5)]\n"
        "import kelpie_tools\n"
        "rows = kelpie_tools.lookup(key='kelp')['rows']\n"
        "print('done', counts[-1])\n"
        "sum(rows) + len(counts)"
    )
    result = run.code(source, host)
    assert result.status == "success", result
    assert result.func_return == 11
    assert host.notes == [f"note {i}" for i in range(5)]
    assert host.calls[-1] == ("lookup", {"key": "kelp"})
    assert result.stdout == "done 5\n"


def test_a_failed_tool_call_raises_tool_error_in_the_code(run: Runner) -> None:
    host = Host()
    source = (
        "import kelpie_tools\n"
        "try:\n"
        "    lookup('a', 'b')\n"
        "except TypeError as error:\n"
        "    print('type error:', error)\n"
        "try:\n"
        "    lookup(key=None)\n"
        "except kelpie_tools.ToolError as error:\n"
        "    print('tool error:', error)\n"
        "'ok'"
    )
    result = run.code(source, host)
    assert result.status == "success", result
    assert result.stdout == (
        "type error: lookup() takes 1 positional arguments\ntool error: lookup needs a key\n"
    )
    assert host.calls == [("lookup", {"key": None})]  # the bad call never left the sandbox


def test_code_forging_a_call_for_an_unknown_tool_gets_an_error(run: Runner) -> None:
    """The channel is the capability: a frame the code writes itself reaches the same host
    callback, which decides what exists."""
    host = Host()
    source = (
        f"{CHANNEL}"
        "body = json.dumps({'call': 'delete_agent', 'arguments': {'agent_id': 'other'}})\n"
        "os.write(fd, struct.pack('>I', len(body)) + body.encode())\n"
        "json.loads(os.read(fd, struct.unpack('>I', os.read(fd, 4))[0]))"
    )
    result = run.code(source, host)
    assert result.status == "success", result
    assert result.func_return == {
        "ok": False,
        "value": "Tool 'delete_agent' is not available to this agent's code",
    }
    assert host.calls == [("delete_agent", {"agent_id": "other"})]


def test_code_without_a_host_cannot_call_tools(run: Runner) -> None:
    source = (
        f"{CHANNEL}"
        "body = json.dumps({'call': 'add_note', 'arguments': {'text': 'x'}}).encode()\n"
        "os.write(fd, struct.pack('>I', len(body)) + body)\n"
        "json.loads(os.read(fd, struct.unpack('>I', os.read(fd, 4))[0]))['ok']"
    )
    result = run.code(source)
    assert result.status == "success", result
    assert result.func_return is False


def test_code_sees_no_environment_but_what_the_job_gives(run: Runner) -> None:
    result = run.code("import os\nsorted(os.environ)")
    assert result.status == "success", result
    assert "OPENAI_API_KEY" not in result.func_return
    assert set(result.func_return) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE"}


def test_code_runs_into_its_timeout_while_the_host_answers(run: Runner) -> None:
    host = Host()
    source = "while True:\n    add_note('again')"
    result = run.code(source, host, limits=SandboxLimits(timeout_s=0.5))
    assert result.status == "error"
    assert result.error == "Tool timed out after 0.5 s"
    assert len(host.notes) > 10


# --- Workspaces


def test_a_file_written_in_one_run_is_there_in_the_next(run: Runner) -> None:
    first = run.code(
        "import os\nopen('kept.txt', 'w').write('kelp forest')\nos.getcwd()", workspace=AGENT
    )
    assert first.status == "success", first
    assert first.func_return == "/workspace"
    second = run.code("open('/workspace/kept.txt').read()", workspace=AGENT)
    assert second.func_return == "kelp forest"
    files = run.sandbox.workspaces.files(AGENT)
    assert [(f.path, f.size_bytes) for f in files] == [("kept.txt", 11)]
    assert run.sandbox.workspaces.read(AGENT, "kept.txt") == b"kelp forest"


def test_another_agents_workspace_is_not_visible(run: Runner) -> None:
    run.code("open('secret.txt', 'w').write('mine')", workspace=AGENT)
    result = run.code(
        "import os\n"
        "[os.path.exists('secret.txt'), os.listdir('.'), os.path.exists('/workspace/..')]",
        workspace=OTHER_AGENT,
    )
    assert result.status == "success", result
    exists, listing, _ = result.func_return
    assert exists is False
    assert listing == []
    # Without a workspace, code runs in its scratch directory and sees no workspace at all.
    bare = run.code("import os\n[os.getcwd(), os.path.exists('/workspace')]")
    assert bare.func_return == ["/tmp", False]


def test_files_written_by_one_sandbox_uid_are_writable_by_the_next(run: Runner) -> None:
    """Each worker has a uid of its own; the workspace follows the worker that runs."""
    run.code("import os\nos.makedirs('deep/er', exist_ok=True)\n"
             "fd = os.open('deep/er/private', os.O_CREAT | os.O_WRONLY, 0o600)\n"
             "os.write(fd, b'one')", workspace=AGENT)  # fmt: skip
    result = run.code(
        "open('deep/er/private', 'a').write('two')\nopen('deep/er/private').read()",
        workspace=AGENT,
    )
    assert result.status == "success", result
    assert result.func_return == "onetwo"


def test_a_workspace_over_its_quota_refuses_the_next_run(run: Runner) -> None:
    agent = "agent-quota"
    over = run.code("open('big', 'wb').write(b'x' * (3 * 1024 * 1024))", workspace=agent)
    assert over.status == "success", over  # one execution may overshoot...
    refused = run.code("1 + 1", workspace=agent)  # ...but none may add to a full one
    assert refused.status == "error"
    assert refused.error is not None
    assert "over its quota" in refused.error
    with pytest.raises(WorkspaceFull):
        run.sandbox.workspaces.write(agent, "more.txt", b"y")
    run.sandbox.workspaces.delete_file(agent, "big")
    assert run.code("1 + 1", workspace=agent).func_return == 2


def test_the_host_never_follows_a_link_the_code_planted(run: Runner) -> None:
    agent = "agent-links"
    planted = run.code(
        "import os\nos.symlink('/etc/shadow', 'shadow')\nos.symlink('/etc', 'etc')\n"
        "os.symlink('/', 'root')",
        workspace=agent,
    )
    assert planted.status == "success", planted
    workspaces = run.sandbox.workspaces
    with pytest.raises(WorkspaceError, match="symbolic link"):
        workspaces.read(agent, "shadow")
    with pytest.raises(WorkspaceError):
        workspaces.read(agent, "etc/passwd")
    with pytest.raises(WorkspaceError):
        workspaces.write(agent, "root/tmp/kelpie-escape", b"x")
    assert not os.path.exists("/tmp/kelpie-escape")
    for bad in ("../x", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(WorkspaceError):
            workspaces.read(agent, bad)
    with pytest.raises(WorkspaceFileMissing):
        workspaces.read(agent, "nothing-here")
    assert [f.path for f in workspaces.files(agent)] == []  # links are not files


def test_removing_a_workspace_deletes_its_files(run: Runner) -> None:
    agent = "agent-removed"
    run.code("open('f', 'w').write('x')", workspace=agent)
    assert run.sandbox.workspaces.files(agent)
    run.sandbox.workspaces.remove(agent)
    assert run.sandbox.workspaces.files(agent) == []
    assert not run.sandbox.workspaces.directory(agent).exists()

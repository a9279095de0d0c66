"""The interpreter tier (`InterpreterSandbox`, Monty) against the real host, beside the
process tier it stands in for: one real `ProcessSandbox` (bubblewrap) and one
`InterpreterSandbox` on top of it serve the module, on an event loop of their own.

- Same snippet, same answer: status, result, stdout, error and the traceback's last line
  are the process tier's for tool calls, prints, results that JSON changes (tuples), a
  failed tool (ToolError, caught or not), a bad call of a tool, an exception, a NameError.
- Tool calls go through `calls` with their arguments (positional ones named), in order,
  and their answers come back as values; `import kelpie_tools` works.
- Limits: a CPU loop and a tool call that never answers both end at the timeout; output
  past the limit, memory past the limit and deep recursion end in an error.
- Confinement: the worker of an execution is not root (a uid of the sandbox's, seccomp,
  no_new_privs, no capabilities) and is gone once the execution is answered; nothing of
  one execution is seen by the next.
- Jobs the tier does not take are refused with a sentence; the predicate takes tool-only
  snippets and sends everything it does not know to the process tier; every builtin it
  allows exists in Monty.

Escape probes (the interpreter tier's beside tests/sandbox/test_escape.py's; each must end
in an error within its timeout plus a grace, never show a planted secret, and leave the
tier serving): reading files (/etc/shadow, a 0644 secret in the host's /tmp, through
open, pathlib and os), listing directories, writing a file in the host's /tmp, the
environment (a secret in the test process's os.environ), imports of os, subprocess,
socket, ctypes and importlib, `__import__`, eval/exec of an import, attribute tricks
(`__class__`, `__subclasses__`, `__globals__`, `__self__`), a huge allocation (one, or in
a loop), a huge integer, an infinite loop, a sleep far past the timeout, deep recursion,
a flood of host round trips, a flood of output.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import psutil
import pytest

from kelpie.sandbox import (
    HostCallAnswer,
    HostCalls,
    InterpreterSandbox,
    ProcessSandbox,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
    ToolStub,
    fits_interpreter,
    interpreter_misfit,
)
from kelpie.sandbox._interpreter import INTERPRETER_BUILTINS

TIMEOUT_S: Final = 20.0
TOOLS: Final = (
    ToolStub(name="add", parameters=("a", "b")),
    ToolStub(name="echo", parameters=("value",)),
    ToolStub(name="fail", parameters=("why",)),
)


class ToolHost:
    """Answers the snippets' tool calls as the server would, and remembers them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        self.calls.append((name, arguments))
        if name == "add":
            return HostCallAnswer(ok=True, value=arguments["a"] + arguments.get("b", 0))
        if name == "echo":
            return HostCallAnswer(ok=True, value=arguments["value"])
        if name == "fail":
            return HostCallAnswer(ok=False, value=f"fail says: {arguments.get('why')}")
        return HostCallAnswer(ok=False, value=f"no tool {name}")


class Tiers:
    def __init__(
        self, runner: asyncio.Runner, process: ProcessSandbox, interpreter: InterpreterSandbox
    ) -> None:
        self.runner = runner
        self.process = process
        self.interpreter = interpreter

    def job(self, code: str, limits: SandboxLimits | None = None) -> ToolJob:
        return ToolJob(
            source_code=code,
            function_name=None,
            tools=TOOLS,
            limits=limits or SandboxLimits(timeout_s=TIMEOUT_S),
        )

    def run(
        self,
        code: str,
        *,
        tier: str = "interpreter",
        calls: HostCalls | None = None,
        limits: SandboxLimits | None = None,
    ) -> ToolJobResult:
        sandbox = self.interpreter if tier == "interpreter" else self.process
        return self.runner.run(sandbox.run(self.job(code, limits), calls or ToolHost()))


@pytest.fixture(scope="module")
def tiers() -> Iterator[Tiers]:
    root_dir = Path(tempfile.mkdtemp(prefix="kelpie-interpreter-"))
    try:
        with asyncio.Runner() as runner:
            process = ProcessSandbox(
                root_dir=root_dir / "sandbox", pool_size=1, code_sessions=False
            )
            interpreter = InterpreterSandbox(
                process, state_dir=root_dir / "interpreter", pool_size=1
            )
            runner.run(process.start())
            runner.run(interpreter.start())
            try:
                runner.run(process.ready())
                if interpreter.unavailable_reason is not None:
                    pytest.fail(f"the interpreter is unavailable: {interpreter.unavailable_reason}")
                yield Tiers(runner, process, interpreter)
            finally:
                runner.run(interpreter.close())
                runner.run(process.close())
    finally:
        shutil.rmtree(root_dir, ignore_errors=True)


TOOL_NAMES = [tool.name for tool in TOOLS]

SAME_AS_PROCESS_TIER = {
    "three calls and a sum": (
        "x = add(1, 2)\ny = add(a=3, b=4)\nprint('got', x, y)\nx + y + add(5, 6)"
    ),
    "a tuple comes back as a list": "(echo('a'), 2, [3, {'k': None}])",
    "no last expression": "total = 0\nfor i in range(3):\n    total += add(i, i)\nprint(total)",
    "a value that JSON cannot carry": "{1, 2}",
    "a failed tool, uncaught": "print('before')\nfail('no')",
    "a failed tool, caught": (
        "try:\n    fail(why='x')\nexcept Exception as e:\n    print('caught:', e)\n'after'"
    ),
    "too many positional arguments": "add(1, 2, 3)",
    "an argument twice": "add(1, a=2)",
    "an exception": "def f(n):\n    return 10 / n\nf(add(0, 0))",
    "an undefined name": "nope(1)",
    "json and math": "import json, math\njson.dumps({'r': math.floor(add(1.5, 1))})",
    "kelpie_tools": (
        "import kelpie_tools\nfrom kelpie_tools import echo\nkelpie_tools.add(1, 1) + echo(1)"
    ),
    "stderr": "import sys\nprint('to stderr', file=sys.stderr)\n1",
}


@pytest.mark.parametrize("code", SAME_AS_PROCESS_TIER.values(), ids=SAME_AS_PROCESS_TIER.keys())
def test_same_answer_as_the_process_tier(tiers: Tiers, code: str) -> None:
    host_i, host_p = ToolHost(), ToolHost()
    ours = tiers.run(code, calls=host_i)
    theirs = tiers.run(code, tier="process", calls=host_p)
    assert (ours.status, ours.func_return, ours.stdout, ours.error) == (
        theirs.status,
        theirs.func_return,
        theirs.stdout,
        theirs.error,
    ), (ours, theirs)
    assert host_i.calls == host_p.calls
    if theirs.traceback is None:
        assert ours.traceback is None
        assert ours.stderr == theirs.stderr
    else:
        assert ours.traceback is not None, ours
        assert ours.traceback.startswith("Traceback (most recent call last):\n")
        # (The process tier's ToolError is `_snippet.ToolError` there: compare the names.)
        ours_last, theirs_last = (t.splitlines()[-1] for t in (ours.traceback, theirs.traceback))
        assert ours_last == theirs_last.removeprefix("_snippet.")
        assert ours.stderr.endswith(ours.traceback)
        assert 'File "<code>"' in ours.traceback


def test_tool_calls_go_through_calls(tiers: Tiers) -> None:
    host = ToolHost()
    result = tiers.run(
        "a = add(2, 3)\nb = echo(value={'n': [a, 'x']})\nimport kelpie_tools\n"
        "c = kelpie_tools.add(b['n'][0], b=10)\n[a, b, c]",
        calls=host,
    )
    assert result.status == "success", result
    assert result.func_return == [5, {"n": [5, "x"]}, 15]
    assert host.calls == [
        ("add", {"a": 2, "b": 3}),
        ("echo", {"value": {"n": [5, "x"]}}),
        ("add", {"a": 5, "b": 10}),
    ]


def test_arguments_travel_as_json(tiers: Tiers) -> None:
    host = ToolHost()
    result = tiers.run("echo((1, 2))", calls=host)
    assert result.func_return == [1, 2]
    assert host.calls == [("echo", {"value": [1, 2]})]
    refused = tiers.run("echo({1, 2})", calls=host)
    assert refused.status == "error"
    assert refused.error is not None
    assert refused.error.startswith("TypeError:"), refused


def test_stop_ends_the_code_at_the_call(tiers: Tiers) -> None:
    seen: list[str] = []

    async def stopping(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        seen.append(name)
        return HostCallAnswer(ok=False, value="waits for approval", stop=True)

    result = tiers.run("try:\n    add(1, 2)\nexcept Exception:\n    pass\necho(1)", calls=stopping)
    assert result.status == "error"
    assert result.error == "CodeStopped: waits for approval"
    assert seen == ["add"]


def test_cpu_loop_times_out(tiers: Tiers) -> None:
    started = time.monotonic()
    result = tiers.run("while True:\n    pass", limits=SandboxLimits(timeout_s=1.0))
    elapsed = time.monotonic() - started
    assert result.status == "error"
    assert result.error == "Tool timed out after 1.0 s"
    assert elapsed < 4.0


def test_a_tool_that_never_answers_times_out(tiers: Tiers) -> None:
    async def hangs(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        import asyncio

        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    started = time.monotonic()
    result = tiers.run(
        "print('waiting')\nadd(1, 2)", calls=hangs, limits=SandboxLimits(timeout_s=1.0)
    )
    assert result.error == "Tool timed out after 1.0 s"
    assert result.stdout == "waiting\n"
    assert time.monotonic() - started < 4.0


def test_output_past_the_limit(tiers: Tiers) -> None:
    limits = SandboxLimits(timeout_s=20.0, output_bytes=1000)
    result = tiers.run("for i in range(1000):\n    print('x' * 50)", limits=limits)
    assert result.status == "error"
    assert result.error == "Tool printed more than 1000 bytes to stdout"
    assert len(result.stdout) <= 1000


def test_memory_past_the_limit(tiers: Tiers) -> None:
    limits = SandboxLimits(timeout_s=20.0, memory_bytes=64 * 2**20)
    result = tiers.run("x = []\nwhile True:\n    x.append('a' * 10**6)", limits=limits)
    assert result.status == "error"
    assert result.error == "Tool was killed: it exceeded its memory limit of 64 MiB"


def test_deep_recursion(tiers: Tiers) -> None:
    result = tiers.run("def f(n):\n    return f(n + 1)\nf(0)")
    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith("RecursionError"), result


def _monty_workers() -> list[psutil.Process]:
    """The running Monty workers below this process (one that exits meanwhile is skipped)."""
    workers = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name() == "monty":
                workers.append(process)
        except psutil.NoSuchProcess:
            continue
    return workers


def _confinement(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines)
    return {key: status[key].split()[0] for key in ("Uid", "Seccomp", "NoNewPrivs", "CapEff")}


def test_worker_is_confined_and_not_root(tiers: Tiers) -> None:
    seen: list[dict[str, str]] = []

    async def inspect(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        seen.extend(_confinement(worker.pid) for worker in _monty_workers())
        return HostCallAnswer(ok=True, value=None)

    result = tiers.run("add(1, 2)", calls=inspect)
    assert result.status == "success", result
    assert seen, "no monty worker found under the test process"
    for worker in seen:
        assert worker["Uid"] != "0", seen
        assert worker["Seccomp"] == "2", seen
        assert worker["NoNewPrivs"] == "1", seen
        assert int(worker["CapEff"], 16) == 0, seen


def test_each_execution_has_a_worker_of_its_own(tiers: Tiers) -> None:
    pids: list[set[int]] = []

    async def record(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        pids.append({w.pid for w in _monty_workers()})
        return HostCallAnswer(ok=True, value=None)

    first = tiers.run("secret = 'kept?'\nadd(1, 2)", calls=record)
    assert first.status == "success", first
    second = tiers.run("add(1, 2)\nsecret", calls=record)
    assert second.status == "error"
    assert second.error == "NameError: name 'secret' is not defined"
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and pids[0] & {w.pid for w in _monty_workers()}:
        time.sleep(0.05)
    # The first execution's worker is gone (what serves later ones is new).
    assert pids[0] - pids[1] or not pids[0] & {w.pid for w in _monty_workers()}
    assert not (pids[0] - pids[1]) & {w.pid for w in _monty_workers()}


def test_jobs_it_does_not_take(tiers: Tiers) -> None:
    for job in (
        ToolJob(source_code="def f():\n    return 1", function_name="f"),
        ToolJob(source_code="1", function_name=None, workspace="agent-1"),
        ToolJob(source_code="1", function_name=None, network=True),
        ToolJob(source_code="1", function_name=None, pip_requirements=("six",)),
    ):
        result = tiers.runner.run(tiers.interpreter.run(job))
        assert result.status == "error"
        assert result.error is not None
        assert "interpreter" in result.error, result


def test_every_allowed_builtin_exists_in_monty(tiers: Tiers) -> None:
    names = sorted(INTERPRETER_BUILTINS)
    result = tiers.run(f"everything = [{', '.join(names)}]\nlen(everything)")
    assert result.status == "success", result
    assert result.func_return == len(names)


FITS = {
    "tools and a sum": "sum(add(i, 1) for i in range(3))",
    "kelpie_tools": (
        "import kelpie_tools\nfrom kelpie_tools import echo\necho(kelpie_tools.add(1, 2))"
    ),
    "functions, lambdas, comprehensions": (
        "def double(x):\n    return 2 * x\nf = lambda y: y + 1\n"
        "[double(f(v)) for v in {k: v for k, v in [(1, 2)]}.values()]"
    ),
    "try/except with a name": "try:\n    fail('x')\nexcept Exception as e:\n    print(e)",
    "json, math, re": "import json\nimport math as m\nfrom re import match\njson.dumps(m.pi)",
}
MISFITS = {
    "syntax error": "1 +",
    "import os": "import os\nos.listdir('/')",
    "import subprocess": "import subprocess",
    "from os import path": "from os import path",
    "relative import": "from . import x",
    "star import": "from json import *",
    "a non-tool from kelpie_tools": "from kelpie_tools import ToolError",
    "ToolError by attribute": "import kelpie_tools\nkelpie_tools.ToolError",
    "open": "open('/etc/passwd').read()",
    "__import__": "__import__('os')",
    "dunder attribute": "().__class__.__bases__",
    "getattr trick": "getattr(add, '__globals__')",
    "eval": "eval('1')",
    "exec": "exec('import os')",
    "globals": "globals()",
    "a generator": "def g():\n    yield 1",
    "await": "await add(1, 2)",
    "async def": "async def f():\n    pass",
    "with": "with x:\n    pass",
    "class": "class A:\n    pass",
    "match": "match 1:\n    case 1:\n        pass",
    "global": "def f():\n    global x",
    "an unknown name": "undefined_tool(1)",
    "bytearray": "bytearray(10)",
    "time": "import time\ntime.sleep(1)",
}


@pytest.mark.parametrize("code", FITS.values(), ids=FITS.keys())
def test_predicate_takes_tool_only_snippets(code: str) -> None:
    assert interpreter_misfit(code, TOOL_NAMES) is None
    assert fits_interpreter(code, TOOL_NAMES)


@pytest.mark.parametrize("code", MISFITS.values(), ids=MISFITS.keys())
def test_predicate_sends_the_rest_to_the_process_tier(code: str) -> None:
    reason = interpreter_misfit(code, TOOL_NAMES)
    assert reason is not None
    assert reason.startswith("it ")
    assert not fits_interpreter(code, TOOL_NAMES)


def test_predicate_needs_the_tool_to_be_the_agents() -> None:
    assert fits_interpreter("add(1, 2)", ["add"])
    assert not fits_interpreter("add(1, 2)", [])
    assert not fits_interpreter("from kelpie_tools import add", ["echo"])


@pytest.mark.parametrize("code", FITS.values(), ids=FITS.keys())
def test_fitting_snippets_run_alike(tiers: Tiers, code: str) -> None:
    ours = tiers.run(code)
    theirs = tiers.run(code, tier="process")
    assert (ours.status, ours.func_return, ours.stdout, ours.error) == (
        theirs.status,
        theirs.func_return,
        theirs.stdout,
        theirs.error,
    ), (ours, theirs)


# --- Escape probes.

ESCAPE_TIMEOUT_S = 3.0
ESCAPE_GRACE_S = 5.0
SECRET = "kelpie-interpreter-escape-" + "5e3c7e7"
SECRET_FILE = Path(tempfile.gettempdir()) / "kelpie-interpreter-escape-secret.txt"
SECRET_ENV = "KELPIE_INTERPRETER_ESCAPE_SECRET"
WRITTEN_FILE = Path(tempfile.gettempdir()) / "kelpie-interpreter-escape-written.txt"

ESCAPES = {
    "open /etc/shadow": "open('/etc/shadow').read()",
    "open the host's secret": f"open({str(SECRET_FILE)!r}).read()",
    "pathlib read": f"import pathlib\npathlib.Path({str(SECRET_FILE)!r}).read_text()",
    "os listdir": "import os\nos.listdir('/')",
    "os open": f"import os\nos.open({str(SECRET_FILE)!r}, 0)",
    "write a host file": f"open({str(WRITTEN_FILE)!r}, 'w').write('x')",
    "pathlib write": f"import pathlib\npathlib.Path({str(WRITTEN_FILE)!r}).write_text('x')",
    "os.environ": f"import os\nos.environ[{SECRET_ENV!r}]",
    "os.getenv": f"import os\nv = os.getenv({SECRET_ENV!r})\nassert v, 'none'\nv",
    "os.system": "import os\nos.system('id')",
    "import subprocess": "import subprocess\nsubprocess.run(['id'])",
    "import socket": "import socket\nsocket.socket()",
    "import ctypes": "import ctypes",
    "import importlib": "import importlib\nimportlib.import_module('os')",
    "__import__": "__import__('os').system('id')",
    "eval an import": "eval(\"__import__('os')\")",
    "exec an import": "exec('import subprocess')",
    "__class__ walk": "().__class__.__bases__[0].__subclasses__()",
    "__globals__ of a tool": "getattr(add, '__globals__')",
    "__self__ of a builtin": "getattr(print, '__self__')",
    "type dict": "type(print).__dict__",
    "huge allocation": "x = 'a' * (10 ** 10)",
    "huge list": "x = [0] * (10 ** 10)",
    "allocation loop": "x = []\nwhile True:\n    x.append(' ' * 10 ** 7)",
    "huge integer": "x = 10 ** 10 ** 9",
    "infinite loop": "while True:\n    pass",
    "sleep past the timeout": "import time\ntime.sleep(10 ** 6)",
    "deep recursion": "def f():\n    return f()\nf()",
    "round-trip flood": "while True:\n    nope()",
    "tool-call flood": "while True:\n    add(1, 2)",
    "output flood": "while True:\n    print('x' * 10000)",
}


@pytest.fixture(scope="module")
def planted() -> Iterator[None]:
    SECRET_FILE.write_text(SECRET)
    SECRET_FILE.chmod(0o644)
    WRITTEN_FILE.unlink(missing_ok=True)
    os.environ[SECRET_ENV] = SECRET
    try:
        yield
    finally:
        os.environ.pop(SECRET_ENV, None)
        SECRET_FILE.unlink(missing_ok=True)
        WRITTEN_FILE.unlink(missing_ok=True)


@pytest.mark.parametrize("code", ESCAPES.values(), ids=ESCAPES.keys())
def test_escape_is_refused_or_bounded(tiers: Tiers, planted: None, code: str) -> None:
    started = time.monotonic()
    result = tiers.run(code, limits=SandboxLimits(timeout_s=ESCAPE_TIMEOUT_S))
    elapsed = time.monotonic() - started
    assert result.status == "error", result
    assert elapsed < ESCAPE_TIMEOUT_S + ESCAPE_GRACE_S, (elapsed, result)
    for text in (str(result.func_return), result.stdout, result.stderr, str(result.error)):
        assert SECRET not in text, result
    assert not WRITTEN_FILE.exists(), "the code wrote a file on the host"
    served = tiers.run("add(40, 2)")
    assert served.func_return == 42, f"the tier no longer serves: {served}"

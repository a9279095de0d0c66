"""The interpreter tier: tool-only snippets run by Monty (PyPI `pydantic-monty`), a small
Python interpreter written in Rust that has no filesystem, network, environment or
subprocess of its own. Everything the code asks of the outside world stops the interpreter
and comes to the host as a snapshot: a call of one of the agent's tools is answered through
`calls` (awaited on the event loop), and everything else (files, `os.environ`, imports of
modules it lacks, undefined names) is refused.

How it is driven: Monty runs code in `monty` worker processes that a `Monty` pool (Rust)
spawns and talks to over pipes. The tier uses Monty's synchronous API from threads of its
own (`feed_start` / `snapshot.resume`, each a short blocking step), never the event loop's
thread: the asynchronous API's Rust threads call back into Python while the interpreter
finalises, which aborts the process at exit. Between two steps the event loop answers the
tool call the code is waiting on.

How it is confined: the interpreter is the first wall, not the only one. Each execution
gets a worker of its own that serves it alone and is then killed, so nothing of one
execution (its heap, a worker it might have subverted) meets the next; a small warm pool
hides the start-up. The worker is spawned through the process tier's `ProgramSandbox`
launch chain: bubblewrap namespaces (no network), seccomp, Landlock, no capabilities,
no_new_privs, cgroups (memory, pids) and, when the server is root, a uid of its own from
the sandbox's range: it never runs as root. The `monty` binary is run through a wrapper
script (0700, root's) that Monty's pool is given as its binary, which execs the confined
command line; once the execution is over the wrapper is deleted before the worker is
killed, so the pool cannot start another one.

Limits: the job's timeout bounds the whole execution on the host (tool calls included) and
Monty's own execution clock inside the worker; Monty's heap limit (the job's memory limit;
the worker's cgroup is a backstop), its recursion limit, a cap on suspensions (tool calls
and other host round trips), and the job's output limit per stream.

`interpreter_misfit` is the pure predicate: whether a snippet can run here with the same
outcome as in the process tier. It is conservative (anything it does not know sends the
snippet to the process tier)."""

import ast
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import shlex
from collections import deque
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import pydantic_monty
from pydantic_monty import (
    FunctionSnapshot,
    Monty,
    MontyComplete,
    MontyCrashedError,
    MontyError,
    MontyRuntimeError,
    MontySession,
    MontySyntaxError,
    MontyTypingError,
    NameLookupSnapshot,
)
from pydantic_monty._binary import find_monty_binary

from kelpie.sandbox._programs import ConfinedCommand, ConfineRefused, ProgramLimits, ProgramSandbox
from kelpie.sandbox._types import (
    MIB,
    SANDBOX_MEMORY_BYTES_DEFAULT,
    TOOL_TIMEOUT_S_MAX,
    HostCallAnswer,
    HostCalls,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
)
from kelpie.sandbox._worker_process import memory_error

if TYPE_CHECKING:
    from kelpie.sandbox._process import ProcessSandbox

_log = logging.getLogger("kelpie.sandbox")

INTERPRETER_POOL_SIZE_DEFAULT: Final = 2
# Threads that drive workers: each execution holds one only while its code runs (not while
# a tool call is answered), so this bounds the executions computing at once.
INTERPRETER_THREADS: Final = 16
# The worker's cgroup, past Monty's own heap limit (the job's): its code and buffers.
INTERPRETER_WORKER_OVERHEAD_BYTES: Final = 64 * MIB
INTERPRETER_WORKER_PROCESSES: Final = 16  # the launch chain and the worker's threads
INTERPRETER_WORKER_TMP_BYTES: Final = 1 * MIB  # the worker writes no file
INTERPRETER_RECURSION_MAX: Final = 1000  # CPython's default
# Host round trips per execution: tool calls (README: at most 1,000), name look-ups of
# tools, sleeps.
INTERPRETER_SUSPENSIONS_MAX: Final = 2100
# How long the host waits for a killed worker's last blocking step to come back.
INTERPRETER_STEP_DRAIN_S: Final = 10.0
RETRY_DELAY_S_FIRST: Final = 0.1
RETRY_DELAY_S_MAX: Final = 10.0
SCRIPT_NAME: Final = "<code>"
_FEED_NAME: Final = re.compile(r'File "<python-input-\d+>"')
TOOLS_MODULE: Final = "kelpie_tools"

# Modules a snippet may import here: those Monty has whose everyday functions behave as
# CPython's (the rest, and anything unsure, go to the process tier).
INTERPRETER_MODULES: Final = frozenset({"json", "math", "re", "typing", TOOLS_MODULE})
# Builtins Monty has (checked by tests/sandbox/test_interpreter.py) that a snippet may use.
INTERPRETER_BUILTINS: Final = frozenset(
    {
        "print", "len", "range", "sum", "min", "max", "sorted", "reversed", "enumerate",
        "zip", "map", "filter", "list", "dict", "set", "frozenset", "tuple", "str", "int",
        "float", "bool", "bytes", "abs", "round", "any", "all", "isinstance", "repr",
        "divmod", "pow", "iter", "next", "chr", "ord", "hex", "bin", "oct", "hash",
        "Exception", "ValueError", "TypeError", "KeyError", "IndexError", "RuntimeError",
        "ZeroDivisionError", "AttributeError", "NameError", "StopIteration",
        "AssertionError", "LookupError", "ArithmeticError", "NotImplementedError",
        "OverflowError",
    }
)  # fmt: skip
# Syntax the tier does not take: what Monty lacks (generators, async at top level, which
# CPython refuses in a snippet), and what a tool-only snippet has no need of (classes,
# context managers, match) and might behave differently in.
_UNFIT_NODES: Final[dict[type[ast.AST], str]] = {
    ast.Yield: "a generator",
    ast.YieldFrom: "a generator",
    ast.Await: "await",
    ast.AsyncFunctionDef: "an async function",
    ast.AsyncFor: "async for",
    ast.AsyncWith: "async with",
    ast.With: "a with statement",
    ast.ClassDef: "a class",
    ast.Match: "a match statement",
    ast.TryStar: "except*",
    ast.Global: "a global statement",
    ast.Nonlocal: "a nonlocal statement",
}


def interpreter_misfit(source: str, tools: Collection[str] = ()) -> str | None:
    """Why `source` should not run in the interpreter tier, or None when it fits: it
    parses, imports only `INTERPRETER_MODULES` (and from `kelpie_tools` only the tools),
    uses none of `_UNFIT_NODES`, no attribute or name that starts with `_`, not
    `ToolError` (Monty has no such class: a failed tool raises an Exception), and every name
    it reads is one it binds, one of `tools` or one of `INTERPRETER_BUILTINS`. Pure: the
    same answer for the same arguments."""
    try:
        tree = ast.parse(source, SCRIPT_NAME)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "it does not parse"
    bound: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        unfit = _UNFIT_NODES.get(type(node))
        if unfit is not None:
            return f"it uses {unfit}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name not in INTERPRETER_MODULES:
                    return f"it imports {alias.name}"
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module not in INTERPRETER_MODULES:
                return f"it imports from {node.module or '.'}"
            for alias in node.names:
                if alias.name == "*":
                    return "it imports *"
                if node.module == TOOLS_MODULE and alias.name not in tools:
                    return f"it imports {alias.name} from {TOOLS_MODULE}"
                bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or node.attr == "ToolError":
                return f"it reads the attribute {node.attr}"
        elif isinstance(node, ast.Name):
            if node.id.startswith("_"):
                return f"it uses the name {node.id}"
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.Lambda):
            if isinstance(node, ast.FunctionDef):
                bound.add(node.name)
            arguments = node.args
            for argument in (
                *arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                *(a for a in (arguments.vararg, arguments.kwarg) if a is not None),
            ):  # fmt: skip
                bound.add(argument.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name is not None:
            bound.add(node.name)
    unknown = sorted(read - bound - set(tools) - INTERPRETER_BUILTINS)
    if unknown:
        return f"it uses {unknown[0]}, which the interpreter may not have"
    return None


def fits_interpreter(source: str, tools: Collection[str] = ()) -> bool:
    """Whether `source` can run in the interpreter tier (see `interpreter_misfit`)."""
    return interpreter_misfit(source, tools) is None


class _Worker:
    """One confined `monty` worker, served by a Monty pool of its own, for one execution."""

    def __init__(self, command: ConfinedCommand, wrapper: Path, pool: Monty) -> None:
        self.command = command
        self.wrapper = wrapper
        self.pool = pool
        self.session: MontySession | None = None
        # The blocking step running in a thread now, if any.
        self.step: concurrent.futures.Future[Any] | None = None


class _Output:
    """The code's prints, per stream, up to the job's limit; called from the driving
    thread. Past the limit it raises, which ends the run inside the worker."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.sizes = {"stdout": 0, "stderr": 0}
        self.overflow: str | None = None

    def __call__(self, stream: Literal["stdout", "stderr"], text: str) -> None:
        size = self.sizes[stream] + len(text.encode())
        if size > self.limit:
            self.overflow = self.overflow or stream
            kept = text.encode()[: max(0, self.limit - self.sizes[stream])]
            self.parts[stream].append(kept.decode(errors="ignore"))
            self.sizes[stream] = self.limit
            raise OverflowError(f"more than {self.limit} bytes printed to {stream}")
        self.sizes[stream] = size
        self.parts[stream].append(text)

    def text(self, stream: str) -> str:
        return "".join(self.parts[stream])


class _Stopped(Exception):
    """The host stopped the code at a tool call (`HostCallAnswer.stop`)."""


class InterpreterSandbox:
    """Runs code-mode jobs (snippets whose tools are answered by the host) in Monty, each in
    a fresh confined worker. Same shape as the process tier: `run(job, calls)` answers a
    `ToolJobResult` and never raises for what the code does. Jobs with a workspace, the
    network, pip requirements or a function to call are refused: they are the process
    tier's. It never runs code unconfined: where the process tier cannot confine, every run
    answers an error saying why."""

    def __init__(
        self,
        process: "ProcessSandbox",
        *,
        state_dir: Path,
        pool_size: int = INTERPRETER_POOL_SIZE_DEFAULT,
        binary: Path | None = None,
        protected: Collection[Path] = (),
    ) -> None:
        assert pool_size >= 0
        self._process = process
        self._state_dir = state_dir
        self._pool_size = pool_size
        self._reason: str | None = None
        self._binary: Path | None = None
        try:
            self._binary = Path(os.path.abspath(find_monty_binary(binary)))
        except FileNotFoundError as error:
            self._reason = f"the interpreter is not installed: {error}"
        self._programs = ProgramSandbox(
            process,
            state_dir=state_dir / "programs",
            protected=tuple(protected),
            limits=ProgramLimits(
                memory_bytes=SANDBOX_MEMORY_BYTES_DEFAULT + INTERPRETER_WORKER_OVERHEAD_BYTES,
                processes=INTERPRETER_WORKER_PROCESSES,
                tmp_bytes=INTERPRETER_WORKER_TMP_BYTES,
            ),
        )
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=INTERPRETER_THREADS, thread_name_prefix="kelpie-interpreter"
        )
        self._started = False
        self._closed = False
        self._ready: deque[_Worker] = deque()
        self._wake = asyncio.Event()
        self._filler: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._serial = 0

    @property
    def unavailable_reason(self) -> str | None:
        """None when code can run confined here (so far); otherwise why not."""
        return self._reason or self._process.unavailable_reason

    @property
    def warm_workers(self) -> int:
        return len(self._ready)

    async def start(self) -> None:
        """Starts filling the warm pool once the process tier's host check is done; returns
        at once. (The process tier must have been started.)"""
        assert not self._started, "started twice"
        self._started = True
        if self._reason is None:
            self._filler = asyncio.create_task(self._fill(), name="kelpie-interpreter-pool")

    async def run(self, job: ToolJob, calls: HostCalls | None = None) -> ToolJobResult:
        if job.function_name is not None or job.workspace or job.network:
            return _error("The interpreter runs code-mode snippets without a workspace only")
        if job.pip_requirements:
            return _error("The interpreter cannot install requirements")
        if not self._started or self._closed:
            return _refused("the sandbox is not running")
        if self._reason is not None:
            return _refused(self._reason)
        worker = self._take()
        if worker is None:
            try:
                worker = await self._start_worker()
            except ConfineRefused as error:
                return _refused(str(error))
            except (OSError, MontyError) as error:
                return _error(f"Tool could not start: {error}")
        output = _Output(job.limits.output_bytes)
        try:
            async with asyncio.timeout(job.limits.timeout_s):
                return await self._drive(worker, job, calls, output)
        except TimeoutError:
            return _failed(output, f"Tool timed out after {job.limits.timeout_s:.1f} s")
        finally:
            retiring = asyncio.create_task(self._retire(worker))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
            self._wake.set()

    async def close(self) -> None:
        self._closed = True
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filler
        workers = list(self._ready)
        self._ready.clear()
        await asyncio.gather(*(self._retire(w) for w in workers), *self._retiring)
        await self._programs.close()
        self._threads.shutdown(wait=True)

    # --- Running one job.

    async def _drive(
        self, worker: _Worker, job: ToolJob, calls: HostCalls | None, output: _Output
    ) -> ToolJobResult:
        tools = {tool.name: tool.parameters for tool in job.tools}
        lookup = {name: _never_called for name in tools}
        module = pydantic_monty.ExternalModule(dict(lookup))
        limits: pydantic_monty.ResourceLimits = {
            "max_feed_duration_secs": job.limits.timeout_s,
            "max_memory": job.limits.memory_bytes,
            "max_recursion_depth": INTERPRETER_RECURSION_MAX,
            "max_suspensions": INTERPRETER_SUSPENSIONS_MAX,
            "max_total_sleep_secs": job.limits.timeout_s,
        }
        session = worker.pool.checkout(
            script_name=SCRIPT_NAME,
            limits=limits,
            assert_message_annotations=False,  # CPython's bare AssertionError
            external_modules={TOOLS_MODULE: module},
        )
        await self._step(worker, session.__enter__)
        worker.session = session
        tool_errors: set[str] = set()
        try:
            snapshot = await self._step(
                worker,
                lambda: session.feed_start(
                    job.source_code, external_lookup=lookup, print_callback=output
                ),
            )
            while not isinstance(snapshot, MontyComplete):
                snapshot = await self._answer(worker, snapshot, tools, calls, tool_errors)
            value = snapshot.output
        except _Stopped as stopped:
            return _code_error(output, "CodeStopped", str(stopped), None)
        except MontyCrashedError as error:
            return _failed(output, _crash_error(error, job.limits))
        except (MontyRuntimeError, MontySyntaxError) as error:
            return _raised(output, error, job.limits, tool_errors)
        except MontyTypingError as error:  # no type checking is asked for
            return _failed(output, f"Tool could not run: {error}")
        if output.overflow is not None:
            return _failed(output, _overflow_error(output))
        return ToolJobResult(
            status="success",
            func_return=_as_json(value),
            stdout=output.text("stdout"),
            stderr=output.text("stderr"),
        )

    async def _answer(
        self,
        worker: _Worker,
        snapshot: Any,
        tools: Mapping[str, tuple[str, ...]],
        calls: HostCalls | None,
        tool_errors: set[str],
    ) -> Any:
        """Answers one suspension; the next snapshot."""
        if isinstance(snapshot, NameLookupSnapshot):
            if snapshot.variable_name in tools:  # a tool read as a value (a host function)
                return await self._step(worker, snapshot.resume_auto)
            return await self._step(worker, snapshot.resume)  # NameError
        if not isinstance(snapshot, FunctionSnapshot):  # futures: no async code here
            return await self._step(worker, snapshot.resume, {})
        name = str(snapshot.function_name)
        if snapshot.is_os_function:
            if name == "import" and snapshot.args == (TOOLS_MODULE,):
                return await self._step(worker, snapshot.resume_auto)
            if name in ("system.sleep", "time.sleep") and _seconds(snapshot.args):
                await asyncio.sleep(_seconds(snapshot.args))
                return await self._step(worker, snapshot.resume, {"return_value": None})
            # Files, the environment, other modules: Monty's own refusal.
            return await self._step(worker, snapshot.resume_not_handled)
        name = name.removeprefix(f"{TOOLS_MODULE}.")
        parameters = tools.get(name)
        if parameters is None:
            result: dict[str, Any] = {
                "exc_type": "NameError",
                "message": f"name '{name}' is not defined",
            }
        else:
            result = await _call_tool(name, parameters, snapshot, calls, tool_errors)
        return await self._step(worker, snapshot.resume, result)

    async def _step(self, worker: _Worker, function: Callable[..., Any], *args: Any) -> Any:
        """Runs one blocking Monty call in a thread of the tier's."""
        step = self._threads.submit(function, *args)
        worker.step = step
        return await asyncio.wrap_future(step)

    # --- Workers.

    def _take(self) -> _Worker | None:
        # The pool is refilled once the job is answered (run's `finally`): a worker's start
        # would compete with the job for the CPU.
        return self._ready.popleft() if self._ready else None

    async def _start_worker(self) -> _Worker:
        assert self._binary is not None
        command = await self._programs.confine([str(self._binary)], {})
        try:
            self._serial += 1
            wrapper = self._state_dir / f"monty-{os.getpid()}-{self._serial}"
            _write_wrapper(wrapper, command)
            pool = Monty(
                binary_path=wrapper,
                min_processes=1,
                max_processes=1,
                # A first session of the tier's own (no code of anyone's) warms the worker
                # up; the second is the job's, and the worker's last.
                max_checkouts_per_worker=2,
                request_timeout=TOOL_TIMEOUT_S_MAX + 10.0,
            )
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._threads, _warm_up, pool)
        except BaseException:
            await command.release()
            raise
        return _Worker(command, wrapper, pool)

    async def _retire(self, worker: _Worker) -> None:
        """Kills the worker (its wrapper gone first: the pool cannot start another), waits
        for its last step and closes its session and pool."""
        with contextlib.suppress(OSError):
            worker.wrapper.unlink()
        try:
            await worker.command.release()
        finally:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._threads, _close_pool, worker)

    async def _fill(self) -> None:
        await self._process.ready()
        if self.unavailable_reason is not None:
            return
        delay_s = RETRY_DELAY_S_FIRST
        while not self._closed:
            if len(self._ready) >= self._pool_size:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                self._ready.append(await self._start_worker())
                delay_s = RETRY_DELAY_S_FIRST
            except (ConfineRefused, OSError, MontyError) as error:
                _log.warning("interpreter pool: %s; retrying in %.1f s", error, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_DELAY_S_MAX)


def _write_wrapper(path: Path, command: ConfinedCommand) -> None:
    """The executable Monty's pool runs as its `monty` binary: the confined command line,
    with exactly its environment, and the pool's own arguments after it."""
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in command.env.items())
    # Its stderr is not the server's: the launch chain's complaints would fill the log, and
    # the worker says what it has to say over its pipes.
    line = f'exec /usr/bin/env -i {assignments} {shlex.join(command.argv)} "$@" 2>/dev/null'
    text = f"#!/bin/sh\n{line}\n"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o700)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _warm_up(pool: Monty) -> None:
    """Starts the pool's worker and has it run a first, empty session (in a thread): the
    first session of a worker costs milliseconds more than later ones."""
    pool.__enter__()
    try:
        with pool.checkout() as session:
            session.feed_run("None")
    except BaseException:
        pool.__exit__(None, None, None)
        raise


def _close_pool(worker: _Worker) -> None:
    """In a thread, once the worker is dead: its last step returns (with a crash), then the
    session and the pool close."""
    if worker.step is not None:
        concurrent.futures.wait([worker.step], timeout=INTERPRETER_STEP_DRAIN_S)
    try:
        if worker.session is not None:
            with contextlib.suppress(MontyError, RuntimeError):
                worker.session.__exit__(None, None, None)
    finally:
        with contextlib.suppress(MontyError, RuntimeError):
            worker.pool.__exit__(None, None, None)


def _never_called(*args: Any, **kwargs: Any) -> None:
    """Stands for a tool in Monty's look-ups: every call is answered by the host instead."""
    raise AssertionError("a tool call from the interpreter is answered by the host")


async def _call_tool(
    name: str,
    parameters: tuple[str, ...],
    snapshot: FunctionSnapshot,
    calls: HostCalls | None,
    tool_errors: set[str],
) -> dict[str, Any]:
    """One tool call, as `kelpie.sandbox._snippet.tool_function` makes it; Monty's answer."""
    args, kwargs = snapshot.args, snapshot.kwargs
    if len(args) > len(parameters):
        return _raise("TypeError", f"{name}() takes {len(parameters)} positional arguments")
    arguments = dict(zip(parameters, args, strict=False))
    for key, value in kwargs.items():
        if key in arguments:
            return _raise("TypeError", f"{name}() got multiple values for argument '{key}'")
        arguments[key] = value
    try:  # what travels to the host is JSON, as from the process tier's snippets
        arguments = json.loads(json.dumps(arguments))
    except (TypeError, ValueError, RecursionError) as error:
        return _raise("TypeError", str(error))
    answer = (
        HostCallAnswer(ok=False, value="No tools can be called from this code")
        if calls is None
        else await calls(name, arguments)
    )
    if answer.stop:
        raise _Stopped(answer.value)
    value = json.loads(json.dumps(answer.value, default=str))
    if not answer.ok:
        # Monty has no ToolError: the code sees an Exception; an uncaught one is named
        # ToolError in the result, as the process tier's.
        tool_errors.add(str(value))
        return _raise("Exception", str(value))
    return {"return_value": value}


def _raise(exc_type: Any, message: str) -> dict[str, Any]:
    return {"exc_type": exc_type, "message": message}


def _seconds(args: tuple[Any, ...]) -> float:
    value = args[0] if args else 0
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


def _as_json(value: Any) -> Any:
    """The value as the process tier's reply carries it: itself when JSON can (after the
    trip through JSON: tuples become lists), else its str()."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _raised(
    output: _Output,
    error: MontyRuntimeError | MontySyntaxError,
    limits: SandboxLimits,
    tool_errors: set[str],
) -> ToolJobResult:
    """The code raised: `Type: message` and a traceback, as the process tier's snippets."""
    if output.overflow is not None:
        return _failed(output, _overflow_error(output))
    inner = error.exception()
    kind, message = type(inner).__name__, str(inner)
    if kind == "MemoryError":
        return _failed(output, memory_error(limits))
    if kind == "TimeoutError" and "time limit exceeded" in message:
        return _failed(output, f"Tool timed out after {limits.timeout_s:.1f} s")
    # Monty names a feed `<python-input-N>`; the process tier's snippets are `<code>`.
    traceback = _FEED_NAME.sub(f'File "{SCRIPT_NAME}"', error.display("traceback"))
    if kind == "Exception" and message in tool_errors:
        kind = "ToolError"
        traceback = traceback.removesuffix("\n").rsplit("\n", 1)[0] + f"\nToolError: {message}"
    return _code_error(output, kind, message, traceback)


def _code_error(output: _Output, kind: str, message: str, traceback: str | None) -> ToolJobResult:
    text = traceback if traceback is not None else f"{kind}: {message}"
    text = text if text.endswith("\n") else text + "\n"
    return ToolJobResult(
        status="error",
        stdout=output.text("stdout"),
        # Python prints the traceback of the exception that ended the code to stderr.
        stderr=output.text("stderr") + text,
        error=f"{kind}: {message}",
        traceback=text,
    )


def _crash_error(error: MontyCrashedError, limits: SandboxLimits) -> str:
    if error.timed_out:
        return f"Tool timed out after {limits.timeout_s:.1f} s"
    return f"Tool was killed: the interpreter's worker died ({error})"


def _overflow_error(output: _Output) -> str:
    limit = output.limit
    size = f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"
    return f"Tool printed more than {size} to {output.overflow}"


def _failed(output: _Output, error: str) -> ToolJobResult:
    return ToolJobResult(
        status="error", stdout=output.text("stdout"), stderr=output.text("stderr"), error=error
    )


def _error(error: str) -> ToolJobResult:
    return ToolJobResult(status="error", error=error)


def _refused(reason: str) -> ToolJobResult:
    return ToolJobResult(status="error", error=f"Code cannot run confined on this host: {reason}")

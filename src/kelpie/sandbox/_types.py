"""What a sandbox is asked to do and what it answers: the seam between the tool runner and
the tiers that execute code (the process tier in production, a scripted one in the
simulator)."""

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    from kelpie.sandbox._workspace import Workspaces

MIB: Final = 1024 * 1024

TOOL_TIMEOUT_S_DEFAULT: Final = 60.0
TOOL_TIMEOUT_S_MAX: Final = 900.0
# Per execution, enforced by the kernel (memory cgroup or RLIMIT_AS, pids cgroup or
# RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_FSIZE, RLIMIT_CPU) and by the host (wall time, output).
SANDBOX_MEMORY_BYTES_DEFAULT: Final = 512 * MIB
SANDBOX_PROCESSES_MAX: Final = 64
SANDBOX_OPEN_FILES_MAX: Final = 256
SANDBOX_FILE_BYTES_MAX: Final = 64 * MIB
SANDBOX_TMP_BYTES_MAX: Final = 64 * MIB
# Each of stdout and stderr; past it the execution is killed and says so.
SANDBOX_OUTPUT_BYTES_MAX: Final = 1 * MIB
# The function's JSON reply (return value and agent state); past it the call fails.
SANDBOX_RESULT_BYTES_MAX: Final = 16 * MIB
SANDBOX_POOL_SIZE_DEFAULT: Final = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class SandboxLimits:
    timeout_s: float = TOOL_TIMEOUT_S_DEFAULT
    memory_bytes: int = SANDBOX_MEMORY_BYTES_DEFAULT
    processes: int = SANDBOX_PROCESSES_MAX
    open_files: int = SANDBOX_OPEN_FILES_MAX
    file_bytes: int = SANDBOX_FILE_BYTES_MAX
    output_bytes: int = SANDBOX_OUTPUT_BYTES_MAX

    def __post_init__(self) -> None:
        assert 0 < self.timeout_s <= TOOL_TIMEOUT_S_MAX, "timeout out of range"
        for name in ("memory_bytes", "processes", "open_files", "file_bytes", "output_bytes"):
            assert getattr(self, name) > 0, f"{name} must be positive"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolStub:
    """A tool code may call: a function of that name in the code's namespace whose calls
    travel to the host. `parameters` names its arguments in order, for positional calls."""

    name: str
    parameters: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class HostCallAnswer:
    """What a tool call from code returns: the tool's value, or (not ok) the error text the
    code sees raised as `kelpie_tools.ToolError`. With `stop`, the code is stopped at the
    call instead (a BaseException it does not catch by accident): the host has paused the
    execution (a call waits for approval) and will run it again."""

    ok: bool
    value: Any
    stop: bool = False


# Answers one tool call (name, keyword arguments) made by the code of an execution.
HostCalls = Callable[[str, dict[str, Any]], Awaitable[HostCallAnswer]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolJob:
    """One call of a Python function defined by `source_code`, or, with no
    `function_name`, one run of `source_code` as a snippet (code mode): its prints are its
    output, the value of its last expression its result, and `tools` the functions it may
    call, each answered by the host.

    `environment` holds the agent's secrets and the sandbox config's variables: it reaches
    the function's `os.environ` and nothing else (never argv, never a log line).
    `agent_state`, when given, is passed as the function's `agent_state` argument (an
    object with `.id`, `.name`, `.memory.get_block(label).value`,
    `.memory.update_block_value(label, value)`, ...); the result carries it back."""

    source_code: str
    function_name: str | None
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tools: tuple[ToolStub, ...] = ()
    # Whose workspace (an agent id) is mounted read-write as the working directory.
    workspace: str | None = None
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    agent_state: Mapping[str, Any] | None = None
    # pip requirement specifiers ("name" or "name==1.2"); installed once per distinct set.
    pip_requirements: tuple[str, ...] = ()
    network: bool = False
    limits: SandboxLimits = dataclasses.field(default_factory=SandboxLimits)

    def __post_init__(self) -> None:
        if self.function_name is None:
            assert not self.arguments, "code takes no arguments"
            assert self.agent_state is None, "code reaches the agent through its tools"
        else:
            assert not self.tools, "only code calls tools through the host"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolJobResult:
    """`func_return` is the function's return value if it is JSON, else its `str()`.
    `error` says what went wrong when status is "error": the function raised
    (`Error executing function f: ValueError: msg`), it timed out, it was killed at a
    limit, its requirements did not install, or the sandbox is unavailable."""

    status: Literal["success", "error"]
    func_return: Any = None
    stdout: str = ""
    stderr: str = ""
    agent_state: Mapping[str, Any] | None = None
    error: str | None = None
    # Code mode: the traceback of the exception that ended the snippet.
    traceback: str | None = None


class Sandbox(Protocol):
    """Runs untrusted code confined, or refuses to. Never runs it unconfined."""

    @property
    def unavailable_reason(self) -> str | None:
        """None when this host can confine code; otherwise why not, in one sentence."""
        ...

    async def start(self) -> None:
        """Checks the host and starts filling the warm pool; returns at once."""
        ...

    async def run(self, job: ToolJob, calls: HostCalls | None = None) -> ToolJobResult:
        """Runs the job to completion, a limit or its timeout. Never raises for anything
        the job's code does. `calls` answers the tool calls of a code-mode job."""
        ...

    @property
    def workspaces(self) -> "Workspaces":
        """The agents' persistent directories (files the REST API lists and serves)."""
        ...

    @property
    def sessions(self) -> "CodeSessions":
        """Agents' code sessions that keep their state between executions."""
        ...

    @property
    def interpreter(self) -> "CodeInterpreter":
        """The interpreter tier for snippets that need only their tools."""
        ...

    async def close(self) -> None: ...


class CodeInterpreter(Protocol):
    """The interpreter tier: snippets that need nothing but their tools and a few pure
    modules run in a small sandboxed interpreter (Monty), which starts in about a
    millisecond. `kelpie.sandbox.fits_interpreter` says which snippets it takes."""

    @property
    def unavailable_reason(self) -> str | None:
        """None when the tier can run here; otherwise why not, in one sentence."""
        ...

    async def start(self) -> None: ...

    async def run(self, job: ToolJob, calls: HostCalls | None = None) -> ToolJobResult: ...

    async def close(self) -> None: ...


class CodeSessions(Protocol):
    """Python sessions that keep their state (variables, imports, open files) for an agent
    between executions, paused to disk when idle and resumed on the next execution, across
    server restarts. The strong-isolation tier (gVisor) in production."""

    @property
    def unavailable_reason(self) -> str | None:
        """None when sessions can run here; otherwise why not, in one sentence."""
        ...

    async def start(self) -> None: ...

    async def run(
        self, agent_id: str, job: ToolJob, calls: HostCalls | None = None
    ) -> ToolJobResult:
        """Runs a code-mode job (no function_name) in the agent's session, starting it or
        resuming it from its paused image first. Never raises for what the code does."""
        ...

    async def pause_idle(self, idle_s: float) -> int:
        """Pauses (checkpoints to disk and stops) sessions idle for `idle_s` or more;
        returns how many."""
        ...

    async def discard(self, agent_id: str) -> None:
        """Ends the agent's session and deletes its paused image (the agent is gone, or
        the session is reset)."""
        ...

    async def close(self) -> None:
        """Pauses every running session, so each resumes after a restart."""
        ...

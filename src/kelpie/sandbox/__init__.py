"""The sandbox: where tools' Python code runs, confined, and nowhere else.

`ProcessSandbox` is the production tier (bubblewrap namespaces, seccomp, Landlock, rlimits,
cgroups and a uid per worker, with a warm pool); the simulator brings its own tier through
the `Sandbox` protocol. A tier that cannot confine code refuses to run it and says why.
`ProgramSandbox` confines long-lived programs (MCP stdio servers) with the same host plan.
`GvisorSessions` keeps an agent's Python session in a gVisor container between executions,
paused to disk when idle (the `CodeSessions` protocol). `InterpreterSandbox` is the
interpreter tier: tool-only snippets in Monty (a Python interpreter in Rust), each in a fresh
worker confined like a program; `interpreter_misfit` says which snippets it takes."""

from kelpie.sandbox._agent_state import AgentState as ToolAgentState
from kelpie.sandbox._gvisor import GvisorSessions
from kelpie.sandbox._interpreter import (
    INTERPRETER_POOL_SIZE_DEFAULT,
    InterpreterSandbox,
    fits_interpreter,
    interpreter_misfit,
)
from kelpie.sandbox._process import ProcessSandbox, SandboxDescription
from kelpie.sandbox._programs import (
    ConfinedCommand,
    ConfineRefused,
    ProgramLimits,
    ProgramSandbox,
)
from kelpie.sandbox._sessions import InterpreterOff, SessionsOff
from kelpie.sandbox._types import (
    MIB,
    SANDBOX_FILE_BYTES_MAX,
    SANDBOX_MEMORY_BYTES_DEFAULT,
    SANDBOX_OPEN_FILES_MAX,
    SANDBOX_OUTPUT_BYTES_MAX,
    SANDBOX_POOL_SIZE_DEFAULT,
    SANDBOX_PROCESSES_MAX,
    SANDBOX_RESULT_BYTES_MAX,
    SANDBOX_TMP_BYTES_MAX,
    TOOL_TIMEOUT_S_DEFAULT,
    TOOL_TIMEOUT_S_MAX,
    CodeInterpreter,
    CodeSessions,
    HostCallAnswer,
    HostCalls,
    Sandbox,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
    ToolStub,
)
from kelpie.sandbox._workspace import (
    SANDBOX_WORKSPACE_DIR,
    WORKSPACE_BYTES_MAX_DEFAULT,
    WorkspaceError,
    WorkspaceFile,
    WorkspaceFileMissing,
    WorkspaceFull,
    Workspaces,
)

__all__ = [
    "INTERPRETER_POOL_SIZE_DEFAULT",
    "MIB",
    "SANDBOX_FILE_BYTES_MAX",
    "SANDBOX_MEMORY_BYTES_DEFAULT",
    "SANDBOX_OPEN_FILES_MAX",
    "SANDBOX_OUTPUT_BYTES_MAX",
    "SANDBOX_POOL_SIZE_DEFAULT",
    "SANDBOX_PROCESSES_MAX",
    "SANDBOX_RESULT_BYTES_MAX",
    "SANDBOX_TMP_BYTES_MAX",
    "SANDBOX_WORKSPACE_DIR",
    "TOOL_TIMEOUT_S_DEFAULT",
    "TOOL_TIMEOUT_S_MAX",
    "WORKSPACE_BYTES_MAX_DEFAULT",
    "CodeInterpreter",
    "CodeSessions",
    "ConfineRefused",
    "ConfinedCommand",
    "GvisorSessions",
    "HostCallAnswer",
    "HostCalls",
    "InterpreterOff",
    "InterpreterSandbox",
    "ProcessSandbox",
    "ProgramLimits",
    "ProgramSandbox",
    "Sandbox",
    "SandboxDescription",
    "SandboxLimits",
    "SessionsOff",
    "ToolAgentState",
    "ToolJob",
    "ToolJobResult",
    "ToolStub",
    "WorkspaceError",
    "WorkspaceFile",
    "WorkspaceFileMissing",
    "WorkspaceFull",
    "Workspaces",
    "fits_interpreter",
    "interpreter_misfit",
]

"""The sandbox: where tools' Python code runs, confined, and nowhere else.

`ProcessSandbox` is the production tier (bubblewrap namespaces, seccomp, Landlock, rlimits,
cgroups and a uid per worker, with a warm pool); the simulator brings its own tier through
the `Sandbox` protocol. A tier that cannot confine code refuses to run it and says why."""

from kelpie.sandbox._agent_state import AgentState as ToolAgentState
from kelpie.sandbox._process import ProcessSandbox, SandboxDescription
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
    Sandbox,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
)

__all__ = [
    "MIB",
    "SANDBOX_FILE_BYTES_MAX",
    "SANDBOX_MEMORY_BYTES_DEFAULT",
    "SANDBOX_OPEN_FILES_MAX",
    "SANDBOX_OUTPUT_BYTES_MAX",
    "SANDBOX_POOL_SIZE_DEFAULT",
    "SANDBOX_PROCESSES_MAX",
    "SANDBOX_RESULT_BYTES_MAX",
    "SANDBOX_TMP_BYTES_MAX",
    "TOOL_TIMEOUT_S_DEFAULT",
    "TOOL_TIMEOUT_S_MAX",
    "ProcessSandbox",
    "Sandbox",
    "SandboxDescription",
    "SandboxLimits",
    "ToolAgentState",
    "ToolJob",
    "ToolJobResult",
]

"""`run_code` and `run_code_with_tools`: Letta's code built-ins, run in Kelpie's own
sandbox with no key inside it: in the agent's code session (gVisor) where the host has
them, so state carries over between runs and turns; else each run in a fresh worker.

In `run_code_with_tools` the agent's tools are functions of the snippet (and of the module
`kelpie_tools`); each call travels over the execution's private channel to this runner,
which makes it exactly as the loop makes a direct call (the same registry, the same
session), so memory edits wait for the step's commit like any other. The channel is the
capability: it belongs to one execution of one agent, and the host decides which agent a
call acts for, never the code. Secrets stay on the host: the snippet's environment is
empty, and a custom tool it calls gets them in its own sandbox."""

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from kelpie.llm import ToolCall
from kelpie.sandbox import HostCallAnswer, Sandbox, SandboxLimits, ToolJob, ToolJobResult, ToolStub
from kelpie.schemas import Tool
from kelpie.tools._returned import ToolReturn
from kelpie.tools._run_custom import output_lines
from kelpie.tools._schema import INJECTED_PARAMS, LOOP_ARGUMENTS
from kelpie.tools._session import ToolOutcome, ToolSession

RUN_CODE: Final = "run_code"
RUN_CODE_WITH_TOOLS: Final = "run_code_with_tools"
CODE_TOOL_NAMES: Final = (RUN_CODE, RUN_CODE_WITH_TOOLS)
CODE_CHARS_MAX: Final = 200_000
TOOL_CALLS_PER_EXECUTION_MAX: Final = 1000

Execute = Callable[[ToolSession, ToolCall, Tool | None], Awaitable[ToolOutcome]]


class CodeRunner:
    names = CODE_TOOL_NAMES

    def __init__(self, sandbox: Sandbox, execute: Execute, *, timeout_s_default: float) -> None:
        self._sandbox = sandbox
        self._execute = execute
        self._timeout_s_default = timeout_s_default

    def runs_concurrently(self, tool: Tool) -> bool:
        """Code shares the agent's workspace and may edit its memory: one at a time."""
        return False

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        code = arguments.get("code")
        if not isinstance(code, str) or not code.strip():
            return ToolReturn(f"{tool.name} needs `code`: the Python source to run", ok=False)
        if len(code) > CODE_CHARS_MAX:
            return ToolReturn(f"`code` is over {CODE_CHARS_MAX} characters", ok=False)
        with_tools = tool.name == RUN_CODE_WITH_TOOLS
        if not with_tools:
            language = arguments.get("language") or "python"
            if language != "python":
                return ToolReturn(
                    f"Kelpie runs Python code; language '{language}' is not available",
                    ok=False,
                )
        stubs = code_tools(session) if with_tools else ()
        job = ToolJob(
            source_code=code,
            function_name=None,
            tools=stubs,
            workspace=session.agent.id,
            limits=SandboxLimits(timeout_s=self._timeout_s_default),
        )
        calls = CodeCalls(session, self._execute, call_id) if with_tools else None
        sessions = self._sandbox.sessions
        if sessions.unavailable_reason is None:
            # The agent's own session: variables, imports and open files carry over.
            result = await sessions.run(session.agent.id, job, calls)
        else:
            result = await self._sandbox.run(job, calls)
        return _tools_return(result) if with_tools else _run_code_return(result)


def code_tools(session: ToolSession) -> tuple[ToolStub, ...]:
    """The agent's tools as the snippet sees them. Terminal tools end a turn, which code
    cannot do, and code does not start code."""
    return tuple(
        ToolStub(name=name, parameters=_parameters(tool))
        for name, tool in sorted(session.tools.items())
        if name not in CODE_TOOL_NAMES and name not in session.terminal
    )


class CodeCalls:
    """Answers the tool calls of one execution, for the session's agent only."""

    def __init__(self, session: ToolSession, execute: Execute, call_id: str) -> None:
        self._session = session
        self._execute = execute
        self._call_id = call_id
        self._offered = {stub.name for stub in code_tools(session)}
        self.count = 0

    async def __call__(self, name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        self.count += 1
        if self.count > TOOL_CALLS_PER_EXECUTION_MAX:
            limit = TOOL_CALLS_PER_EXECUTION_MAX
            return HostCallAnswer(False, f"Code may make at most {limit} tool calls in one run")
        tool = self._session.tools.get(name)
        if tool is None or name not in self._offered:
            return HostCallAnswer(False, f"Tool '{name}' is not available to this agent's code")
        if name in self._session.needs_approval:
            return HostCallAnswer(
                False,
                f"Tool '{name}' needs approval: call it directly, not from code",
            )
        most = self._session.max_count.get(name)
        if most is not None and self._session.called.count(name) >= most:
            return HostCallAnswer(False, f"Tool '{name}' may be called {most} times per step")
        injected = sorted(set(arguments) & INJECTED_PARAMS)
        if injected:
            return HostCallAnswer(False, f"'{injected[0]}' is supplied by the server")
        self._session.called.append(name)
        call = ToolCall(id=self._call_id, name=name, arguments=json.dumps(arguments))
        outcome = await self._execute(self._session, call, tool)
        if outcome.ok and outcome.value is not None:
            return HostCallAnswer(True, outcome.value)
        return HostCallAnswer(outcome.ok, outcome.returned)


def _parameters(tool: Tool) -> tuple[str, ...]:
    schema = tool.json_schema or {}
    properties = (schema.get("parameters") or {}).get("properties") or {}
    skipped = LOOP_ARGUMENTS | INJECTED_PARAMS
    return tuple(name for name in properties if name not in skipped)


def _tools_return(result: ToolJobResult) -> ToolReturn:
    """Letta's shape for run_code_with_tools: {status, func_return, stdout, stderr}."""
    stderr = output_lines(result.stderr)
    if result.status == "error" and result.traceback is None and result.error:
        stderr.append(result.error)  # killed or refused: the snippet printed no traceback
    body: dict[str, Any] = {
        "status": result.status,
        "func_return": result.func_return if result.status == "success" else result.error,
        "stdout": output_lines(result.stdout),
        "stderr": stderr,
    }
    text = json.dumps(body, ensure_ascii=False, default=str)
    return ToolReturn(text, ok=result.status == "success", stdout=body["stdout"], stderr=stderr)


def _run_code_return(result: ToolJobResult) -> ToolReturn:
    """Letta's shape for run_code: {results, logs: {stdout, stderr}, error?}."""
    body: dict[str, Any] = {
        "results": [] if result.func_return is None else [result.func_return],
        "logs": {"stdout": output_lines(result.stdout), "stderr": output_lines(result.stderr)},
    }
    if result.status == "error":
        name, _, value = (result.error or "Error").partition(": ")
        body["error"] = {"name": name, "value": value, "traceback": result.traceback or ""}
    text = json.dumps(body, ensure_ascii=False, default=str)
    logs = body["logs"]
    return ToolReturn(
        text, ok=result.status == "success", stdout=logs["stdout"], stderr=logs["stderr"]
    )

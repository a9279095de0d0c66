"""`run_code` and `run_code_with_tools`: Letta's code built-ins, run in Kelpie's own
sandbox with no key inside it: in the agent's code session (gVisor) where the host has
them, so state carries over between runs and turns; else each run in a fresh worker.

In `run_code_with_tools` the agent's tools are functions of the snippet (and of the module
`kelpie_tools`); each call travels over the execution's private channel to this runner,
which makes it exactly as the loop makes a direct call (the same registry, the same
session), so memory edits wait for the step's commit like any other. The channel is the
capability: it belongs to one execution of one agent, and the host decides which agent a
call acts for, never the code. Secrets stay on the host: the snippet's environment is
empty, and a custom tool it calls gets them in its own sandbox.

A call of a tool that needs approval stops the code there, as a direct call stops the
turn: the runner hands back a CodePause (no return yet) and the loop asks the client. When
the reply comes the code runs again from its start, its earlier calls answered from the
pause (not run twice), the waiting call by the reply. Like a workflow replayed in Temporal,
the code must make the same calls in the same order when it runs again; what it does
besides calling tools (prints, files, a session's variables) is done again."""

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from kelpie.llm import ToolCall
from kelpie.obs import Metrics
from kelpie.sandbox import (
    HostCallAnswer,
    Sandbox,
    SandboxLimits,
    ToolJob,
    ToolJobResult,
    ToolStub,
    fits_interpreter,
)
from kelpie.schemas import CodeCallAnswer, CodePause, StoredToolCall, Tool
from kelpie.tools._returned import ToolReturn
from kelpie.tools._run_custom import output_lines
from kelpie.tools._schema import INJECTED_PARAMS, LOOP_ARGUMENTS
from kelpie.tools._session import CodeResume, ToolOutcome, ToolSession

RUN_CODE: Final = "run_code"
RUN_CODE_WITH_TOOLS: Final = "run_code_with_tools"
CODE_TOOL_NAMES: Final = (RUN_CODE, RUN_CODE_WITH_TOOLS)
CODE_CHARS_MAX: Final = 200_000
TOOL_CALLS_PER_EXECUTION_MAX: Final = 1000

Execute = Callable[[ToolSession, ToolCall, Tool | None], Awaitable[ToolOutcome]]


class CodeRunner:
    names = CODE_TOOL_NAMES

    def __init__(
        self,
        sandbox: Sandbox,
        execute: Execute,
        *,
        timeout_s_default: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._execute = execute
        self._timeout_s_default = timeout_s_default
        self._metrics = metrics or Metrics(enabled=False)

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
        resume = session.code_resumes.pop(call_id, None)
        calls = CodeCalls(session, self._execute, call_id, resume) if with_tools else None
        sessions, interpreter = self._sandbox.sessions, self._sandbox.interpreter
        if sessions.unavailable_reason is None:
            # The agent's own session: variables, imports and open files carry over.
            self._metrics.record_code_run("session")
            result = await sessions.run(session.agent.id, job, calls)
        elif interpreter.unavailable_reason is None and fits_interpreter(
            code, [stub.name for stub in stubs]
        ):
            # Nothing but its tools and pure modules: no process, no workspace to mount.
            self._metrics.record_code_run("interpreter")
            result = await interpreter.run(dataclasses.replace(job, workspace=None), calls)
        else:
            self._metrics.record_code_run("process")
            result = await self._sandbox.run(job, calls)
        if calls is not None and calls.diverged is not None:
            return ToolReturn(calls.diverged, ok=False)
        if calls is not None and calls.waiting is not None:
            name, arguments = calls.waiting
            waiting = StoredToolCall(
                id=f"{call_id}-code-{len(calls.answers)}",
                name=name,
                arguments=json.dumps(arguments, ensure_ascii=False),
            )
            outer = StoredToolCall(id=call_id, name=tool.name, arguments=json.dumps(arguments))
            pause = CodePause(call=outer, waiting=waiting, answers=calls.answers)
            return ToolReturn(None, paused=pause)
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
    """Answers the tool calls of one execution, for the session's agent only. Every answer
    is kept (`answers`): if a call waits for approval, the execution stops there
    (`waiting`), and when it runs again (`resume`) those answers are replayed."""

    def __init__(
        self,
        session: ToolSession,
        execute: Execute,
        call_id: str,
        resume: CodeResume | None = None,
    ) -> None:
        self._session = session
        self._execute = execute
        self._call_id = call_id
        self._offered = {stub.name for stub in code_tools(session)}
        self._resume = resume
        self.count = 0
        self.answers: list[CodeCallAnswer] = []
        # The call that waits for approval (name, arguments); the code was stopped at it.
        self.waiting: tuple[str, dict[str, Any]] | None = None
        # Why code that ran again was stopped: it did not make the calls it made before.
        self.diverged: str | None = None

    async def __call__(self, name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        if self.waiting is not None or self.diverged is not None:
            return HostCallAnswer(False, "The code was stopped", stop=True)
        self.count += 1
        if self.count > TOOL_CALLS_PER_EXECUTION_MAX:
            limit = TOOL_CALLS_PER_EXECUTION_MAX
            return HostCallAnswer(False, f"Code may make at most {limit} tool calls in one run")
        resume, index = self._resume, len(self.answers)
        if resume is not None and index <= len(resume.answers):
            return await self._replay(resume, index, name, arguments)
        answer = await self._answer(name, arguments)
        if not answer.stop:
            self.answers.append(CodeCallAnswer(name=name, arguments=arguments, **_kept(answer)))
        return answer

    async def _replay(
        self, resume: CodeResume, index: int, name: str, arguments: dict[str, Any]
    ) -> HostCallAnswer:
        """Code running again after an approval: its earlier calls get their answers back,
        the waiting call gets the reply (or runs, approved)."""
        before = resume.answers[index] if index < len(resume.answers) else None
        expected = resume.waiting if before is None else (before.name, before.arguments)
        if (name, arguments) != expected:
            self.diverged = (
                f"The code called {name}({_shown(arguments)}) as its call {index + 1} when it "
                f"ran again after the approval, not {expected[0]}({_shown(expected[1])}): "
                "code that waits for an approval runs again from its start and must make "
                "the same tool calls in the same order"
            )
            return HostCallAnswer(False, self.diverged, stop=True)
        if before is not None:
            self.answers.append(before)
            return HostCallAnswer(before.ok, before.value)
        if resume.reply is None:
            answer = await self._run(name, arguments)  # approved
        else:
            answer = HostCallAnswer(*resume.reply)
        self.answers.append(CodeCallAnswer(name=name, arguments=arguments, **_kept(answer)))
        return answer

    async def _answer(self, name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        tool = self._session.tools.get(name)
        if tool is None or name not in self._offered:
            return HostCallAnswer(False, f"Tool '{name}' is not available to this agent's code")
        if name in self._session.needs_approval:
            self.waiting = (name, arguments)
            return HostCallAnswer(False, f"Tool '{name}' waits for approval", stop=True)
        return await self._run(name, arguments)

    async def _run(self, name: str, arguments: dict[str, Any]) -> HostCallAnswer:
        tool = self._session.tools[name]
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


def _kept(answer: HostCallAnswer) -> dict[str, Any]:
    """An answer as a pause keeps it (JSON: a value that is not becomes its str())."""
    try:
        value = json.loads(json.dumps(answer.value))
    except (TypeError, ValueError):
        value = str(answer.value)
    return {"ok": answer.ok, "value": value}


def _shown(arguments: dict[str, Any]) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
    return text if len(text) <= 200 else text[:200] + "…"


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

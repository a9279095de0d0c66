"""The tool runner seam: which runner executes a tool, and the one way a call is made.

A tool is run by the runner registered for its name (Letta's built-in tools, the web
tools, the code tools) or else for its type (`custom` tools in the sandbox, `external_mcp`
tools on their server). Client-side tools and tools under approval never get here: the
loop stops for the client first. The loop asks the registry; it does not know how a tool
runs. The code tools call tools themselves, through this same registry.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from kelpie.env import Clock, Env
from kelpie.llm import ToolCall
from kelpie.obs import Metrics, TraceAttr, Tracing
from kelpie.schemas import Tool, ToolType
from kelpie.tools._returned import ToolReturn
from kelpie.tools._run_builtin import (
    MemoryToolRunner,
    SearchToolRunner,
    SendMessageRunner,
    WorkingMemoryToolRunner,
)
from kelpie.tools._run_code import CodeRunner
from kelpie.tools._run_custom import CustomToolRunner
from kelpie.tools._run_mcp import McpToolRunner
from kelpie.tools._run_web import FetchWebpageRunner, WebSearchRunner
from kelpie.tools._schema import LOOP_ARGUMENTS
from kelpie.tools._session import ToolOutcome, ToolSession

ERROR_TEXT_CHARS_MAX: Final = 1000
# The tool type metrics name a call of a tool the agent does not have.
UNKNOWN_TOOL_TYPE: Final = "unknown"


class ToolRunner(Protocol):
    def runs_concurrently(self, tool: Tool) -> bool:
        """True if calls of this tool may run beside the step's other calls: the tool
        neither reads nor writes what another call of the step may change."""
        ...

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn: ...


class UnavailableRunner:
    """Tools whose executor this version does not have: the model is told so."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def runs_concurrently(self, tool: Tool) -> bool:
        return True

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        return ToolReturn(f"Tool '{tool.name}' cannot run: {self._reason}", ok=False)


class ToolRegistry:
    def __init__(
        self,
        by_name: Mapping[str, ToolRunner],
        by_type: Mapping[ToolType, ToolRunner],
        *,
        clock: Clock,
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self._by_name = dict(by_name)
        self._by_type = dict(by_type)
        # Every call is timed on `clock` and counted in `metrics`, by tool type and status,
        # and traced (a span under the step's, or under the code run's that made it).
        self._clock = clock
        self._metrics = metrics
        self._tracing = tracing or Tracing()

    def add(self, name: str, runner: ToolRunner) -> None:
        """Registers a runner that itself calls tools through this registry (code)."""
        assert name not in self._by_name, f"a runner for {name} is registered already"
        self._by_name[name] = runner

    def runner_for(self, tool: Tool) -> ToolRunner | None:
        if tool.tool_type != "custom" and tool.name in self._by_name:
            return self._by_name[tool.name]
        return self._by_type.get(tool.tool_type)

    def runs_concurrently(self, tool: Tool | None) -> bool:
        runner = None if tool is None else self.runner_for(tool)
        return runner is not None and tool is not None and runner.runs_concurrently(tool)

    async def execute(self, session: ToolSession, call: ToolCall, tool: Tool | None) -> ToolOutcome:
        """Runs one call. Whatever the tool does, the model gets a return: bad arguments,
        an unknown tool and a runner's own failure are error returns."""
        tool_type = UNKNOWN_TOOL_TYPE if tool is None else tool.tool_type
        with self._tracing.tool_call(call.name, tool_type, call.id) as span:
            started_s = self._clock.monotonic_s()
            outcome = await self._execute(session, call, tool)
            elapsed_s = self._clock.monotonic_s() - started_s
            self._metrics.record_tool_call(tool_type, outcome.ok, elapsed_s)
            span.set_attribute(TraceAttr.TOOL_OK, outcome.ok)
            if not outcome.ok:
                span.fail("tool_error")
        return outcome

    async def _execute(
        self, session: ToolSession, call: ToolCall, tool: Tool | None
    ) -> ToolOutcome:
        try:
            parsed = json.loads(call.arguments or "{}")
        except ValueError as error:
            return ToolOutcome(f"Error parsing arguments of {call.name}: {error}", False, {})
        if not isinstance(parsed, dict):
            return ToolOutcome(f"Arguments of {call.name} must be a JSON object", False, {})
        runner = None if tool is None else self.runner_for(tool)
        if tool is None or runner is None:
            return ToolOutcome(f"Tool {call.name} not found", False, parsed)
        arguments = {k: v for k, v in parsed.items() if k not in LOOP_ARGUMENTS}
        try:
            done = await runner.run(session, tool, arguments, call.id)
        except Exception as error:  # a tool's own failure is the model's to see
            return ToolOutcome(exception_text(call.name, error), False, parsed)
        return ToolOutcome(
            done.returned,
            done.ok,
            parsed,
            stdout=done.stdout,
            stderr=done.stderr,
            value=done.value,
            paused=done.paused,
        )


def exception_text(tool_name: str, error: BaseException) -> str:
    """Letta's error return for a tool that raised, cut to ERROR_TEXT_CHARS_MAX."""
    text = f"Error executing function {tool_name}: {type(error).__name__}: {error}"
    return text[:ERROR_TEXT_CHARS_MAX]


def default_registry(env: Env) -> ToolRegistry:
    builtin: Sequence[Any] = (
        MemoryToolRunner(),
        WorkingMemoryToolRunner(),
        SendMessageRunner(),
        SearchToolRunner(),
    )
    by_name: dict[str, ToolRunner] = {name: r for r in builtin for name in r.names}
    by_name["fetch_webpage"] = FetchWebpageRunner(env.web)
    by_name["web_search"] = WebSearchRunner(env.web)
    timeout_s = env.config.tool_timeout_s
    by_type: dict[ToolType, ToolRunner] = {
        "custom": CustomToolRunner(env.sandbox, timeout_s_default=timeout_s),
        "external_mcp": McpToolRunner(env.store, env.mcp, timeout_s=timeout_s),
        "letta_builtin": UnavailableRunner("this Letta built-in is not in Kelpie"),
    }
    registry = ToolRegistry(
        by_name, by_type, clock=env.clock, metrics=env.metrics, tracing=env.tracing
    )
    code = CodeRunner(
        env.sandbox, registry.execute, timeout_s_default=timeout_s, metrics=env.metrics
    )
    for name in code.names:
        registry.add(name, code)
    return registry

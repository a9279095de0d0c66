"""The agent loop: one turn of an agent, step by step. Each step asks the model, runs the
tools it called, and commits everything the step changed (messages, block edits, archival
writes, run state, the step record) in one transaction before any of it is streamed as
final or acknowledged.

Per agent type (letta-api.md §3.1): `letta_v1_agent` and `sleeptime_agent` end the turn on
a reply without tool calls; `memgpt_agent`, `memgpt_v2_agent` and `react_agent` continue
only on `request_heartbeat`, a failed tool, or a continue rule.
"""

import dataclasses
from typing import Any, Final

from kelpie.agent._executor import ToolExecutor, ToolOutcome
from kelpie.agent._prompt import compile_system_prompt, uses_line_numbers
from kelpie.agent._render import SEND_MESSAGE_TOOL, expand, item_otid
from kelpie.agent._returns import exception_text, package_return, truncate_return
from kelpie.agent._rules import ToolRuleSolver
from kelpie.agent._turn import Turn, TurnResult, to_chat
from kelpie.env import Env
from kelpie.llm import LlmDelta, LlmError, LlmRequest, LlmResponse, ToolCall, ToolSpec, Usage
from kelpie.memory import MemorySearch
from kelpie.schemas import (
    MESSAGE_PREFIX,
    STEP_PREFIX,
    Message,
    Run,
    Step,
    StopReason,
    StoredToolCall,
    Tool,
    UsageStatistics,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.storage import StepCommit

HEARTBEAT_AGENT_TYPES: Final = frozenset({"memgpt_agent", "memgpt_v2_agent", "react_agent"})
HEARTBEAT_OK: Final = (
    "[This is an automated system message hidden from the user] Function called using"
    " request_heartbeat=true, returning control"
)
HEARTBEAT_FAILED: Final = (
    "[This is an automated system message hidden from the user] Function call failed,"
    " returning control"
)
REQUIRED_BEFORE_EXIT_NUDGE: Final = (
    "[This is an automated system message hidden from the user] You must call {tools} before"
    " you finish this turn."
)
_HEARTBEAT_PARAMETER: Final = {
    "type": "boolean",
    "description": "Request an immediate heartbeat after function execution. Set to true if"
    " you want to continue working after this function returns.",
}


def add_usage(total: Usage, more: Usage) -> Usage:
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        total_tokens=total.total_tokens + more.total_tokens,
        cached_input_tokens=total.cached_input_tokens + more.cached_input_tokens,
        reasoning_tokens=total.reasoning_tokens + more.reasoning_tokens,
    )


def usage_statistics(usage: Usage, steps: int, run_id: str) -> UsageStatistics:
    return UsageStatistics(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        step_count=steps,
        run_ids=[run_id],
        cached_input_tokens=usage.cached_input_tokens or None,
        reasoning_tokens=usage.reasoning_tokens or None,
        context_tokens=usage.prompt_tokens or None,
    )


class AgentLoop:
    def __init__(self, env: Env, memory: MemorySearch) -> None:
        self._env = env
        self._memory = memory

    async def run_turn(self, turn: Turn) -> TurnResult:
        history = await self._env.store.get_messages(turn.agent.message_ids)
        return await _TurnRunner(self._env, self._memory, turn, history).run()


@dataclasses.dataclass
class _Step:
    id: str
    start: int  # index in runner.new of the step's first message
    usage: Usage = dataclasses.field(default_factory=Usage)


class _TurnRunner:
    def __init__(self, env: Env, memory: MemorySearch, turn: Turn, history: list[Message]) -> None:
        self._env = env
        self._memory = memory
        self._turn = turn
        self._executor = ToolExecutor(env, memory, turn, list(turn.blocks))
        self._solver = ToolRuleSolver(turn.agent.tool_rules)
        self._tools = {tool.name: tool for tool in turn.tools}
        # History is in creation order: its last message is the newest.
        self._floor_us = us_from_datetime(history[-1].created_at) if history else 0
        if history and history[0].role == "system":
            self._system, self._history = history[0], history[1:]
        else:
            self._system, self._history = self._message(role="system", text=""), history
        self._system_dirty = True
        self.new: list[Message] = [self._message(**fields) for fields in turn.input]
        self._committed: set[str] = set()
        self._called: list[str] = []
        self._last_output: str | None = None
        self._usage = Usage()
        self._steps = 0
        self._heartbeat = turn.agent.agent_type in HEARTBEAT_AGENT_TYPES

    async def run(self) -> TurnResult:
        stop: StopReason = "max_steps"
        error: LlmError | None = None
        try:
            for _ in range(self._turn.max_steps):
                if self._turn.cancelled():
                    stop = "cancelled"
                    break
                outcome = await self._step()
                if outcome is not None:
                    stop = outcome
                    break
        except LlmError as failure:
            stop, error = "llm_api_error", failure
        run = self._final_run(stop, error)
        await self._commit(None, run)
        return TurnResult(
            messages=self.new,
            stop_reason=stop,
            usage=self._usage,
            steps=self._steps,
            run=run,
            error=error,
        )

    # One step -------------------------------------------------------------------------

    async def _step(self) -> StopReason | None:
        turn = self._turn
        step = _Step(id=self._env.entropy.new_id(STEP_PREFIX), start=len(self.new))
        self._recompile()
        allowed, must_call = self._solver.allowed(
            list(self._tools), self._called, self._last_output
        )
        specs = [self._spec(self._tools[name]) for name in allowed]
        specs += [spec for spec in turn.client_tools if spec.name not in self._tools]
        request = LlmRequest(
            config=turn.llm_config,
            messages=tuple(to_chat([self._system, *self._history, *self.new])),
            tools=tuple(specs),
            tool_choice="required" if must_call and allowed else None,
            parallel_tool_calls=bool(turn.llm_config.parallel_tool_calls),
        )
        assistant_id = self._env.entropy.new_id(MESSAGE_PREFIX)
        streamer = _DeltaStreamer(self, assistant_id, step.id) if turn.stream_tokens else None
        response = await turn.llm.complete(request, streamer.on_delta if streamer else None)
        self._usage = add_usage(self._usage, response.usage)
        step.usage = response.usage
        self._steps += 1
        self.new.append(self._assistant(assistant_id, step.id, response))
        stop = await self._after_response(response, step.id)
        if stop is None and self._steps >= turn.max_steps:
            stop = "max_steps"
        await self._commit(step, self._running_run() if stop is None else None)
        await self._emit_step(step)
        return stop

    async def _after_response(self, response: LlmResponse, step_id: str) -> StopReason | None:
        if not response.tool_calls:
            missing = self._solver.missing_before_exit(self._called)
            if missing:
                nudge = REQUIRED_BEFORE_EXIT_NUDGE.format(tools=", ".join(missing))
                self.new.append(self._message(role="user", text=nudge, hidden=True))
                return None
            return "max_tokens_exceeded" if response.finish_reason == "length" else "end_turn"
        if any(self._needs_approval(call) for call in response.tool_calls):
            self.new[-1] = self.new[-1].model_copy(update={"approval_request": True})
            return "requires_approval"
        stop: StopReason | None = None
        keep_going = not self._heartbeat
        for call in response.tool_calls:
            outcome = await self._run_tool(call)
            self._record_return(call, outcome, step_id)
            if call.name in self._solver.terminal:
                # A reply through send_message is an ordinary end of turn.
                stop = "end_turn" if call.name == SEND_MESSAGE_TOOL else "tool_rule"
            if self._heartbeat:
                wants = outcome.arguments.get("request_heartbeat") is True
                continuing = call.name in self._solver.continuing
                keep_going = keep_going or wants or not outcome.ok or continuing
        if stop is not None:
            return stop
        if self._heartbeat:
            if not keep_going:
                return "end_turn"
            failed = self.new[-1].tool_status == "error"
            text = HEARTBEAT_FAILED if failed else HEARTBEAT_OK
            self.new.append(self._message(role="user", text=text, hidden=True))
        return None

    def _needs_approval(self, call: ToolCall) -> bool:
        return call.name in self._turn.client_tool_names or call.name in self._solver.needs_approval

    async def _run_tool(self, call: ToolCall) -> ToolOutcome:
        try:
            return await self._executor.execute(call, self._tools.get(call.name))
        except Exception as error:  # a tool's own failure is the model's to see
            return ToolOutcome(exception_text(call.name, error), False, {})

    def _record_return(self, call: ToolCall, outcome: ToolOutcome, step_id: str) -> None:
        tool = self._tools.get(call.name)
        limit = tool.return_char_limit if tool is not None else None
        returned = "None" if outcome.returned is None else outcome.returned
        if limit is not None:
            returned = truncate_return(returned, limit)
        packaged = package_return(
            returned, ok=outcome.ok, now=self._now(), timezone=self._timezone()
        )
        self.new.append(
            self._message(
                role="tool",
                text=packaged,
                tool_call_id=call.id,
                tool_name=call.name,
                tool_return=returned,
                tool_status="success" if outcome.ok else "error",
                step_id=step_id,
            )
        )
        self._called.append(call.name)
        self._last_output = packaged

    # Messages, prompt, tool specs ------------------------------------------------------

    def _now(self) -> Any:
        return datetime_from_us(self._env.clock.now_us())

    def _timezone(self) -> str:
        return self._turn.agent.timezone or "UTC"

    def _message(self, **fields: Any) -> Message:
        # Times increase strictly within an agent: history order is stable even when the
        # wall clock stands still or steps back.
        self._floor_us = max(self._env.clock.now_us(), self._floor_us + 1)
        fields.setdefault("id", self._env.entropy.new_id(MESSAGE_PREFIX))
        return Message(
            agent_id=self._turn.agent.id,
            conversation_id=self._turn.conversation_id,
            run_id=self._turn.run.id,
            created_at=datetime_from_us(self._floor_us),
            **fields,
        )

    def _assistant(self, message_id: str, step_id: str, response: LlmResponse) -> Message:
        calls = [
            StoredToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in response.tool_calls
        ]
        return self._message(
            id=message_id,
            role="assistant",
            text=response.content or None,
            reasoning=response.reasoning,
            tool_calls=calls,
            step_id=step_id,
        )

    def _spec(self, tool: Tool) -> ToolSpec:
        schema = tool.json_schema or {}
        parameters = dict(schema.get("parameters") or {"type": "object", "properties": {}})
        if self._heartbeat and tool.name != "send_message":
            properties = {
                **parameters.get("properties", {}),
                "request_heartbeat": _HEARTBEAT_PARAMETER,
            }
            required = [*parameters.get("required", []), "request_heartbeat"]
            parameters = {**parameters, "properties": properties, "required": required}
        return ToolSpec(name=tool.name, description=tool.description or "", parameters=parameters)

    def _recompile(self) -> None:
        turn, agent = self._turn, self._turn.agent
        text = compile_system_prompt(
            system=turn.system_override or agent.system,
            blocks=list(self._executor.blocks.values()),
            agent_type=agent.agent_type,
            agent_id=agent.id,
            conversation_id=turn.conversation_id,
            recompiled_at=self._now(),
            timezone=self._timezone(),
            previous_message_count=turn.recall_count,
            archival_memory_count=turn.archival_count,
            tool_rules=agent.tool_rules,
            line_numbered=uses_line_numbers(agent.agent_type, turn.llm_config.model_endpoint_type),
        )
        # Recompiled only when memory changed: the timestamp alone is no reason to rewrite.
        if self._system_dirty or self._executor.memory_changed:
            if text != self._system.text:
                self._system = self._system.model_copy(update={"text": text})
                self._committed.discard(self._system.id)
            self._system_dirty = False
            self._executor.memory_changed = False

    # Runs, commits, events ---------------------------------------------------------------

    def _running_run(self) -> Run:
        return self._turn.run.model_copy(
            update={
                "status": "running",
                "usage": usage_statistics(self._usage, self._steps, self._turn.run.id),
            }
        )

    def _final_run(self, stop: StopReason, error: LlmError | None) -> Run:
        status = (
            "failed" if error is not None else "cancelled" if stop == "cancelled" else "completed"
        )
        metadata = dict(self._turn.run.metadata or {})
        if error is not None:
            metadata["error"] = {
                "message_type": "error_message",
                "run_id": self._turn.run.id,
                "error_type": error.error_type,
                "message": str(error),
                "detail": error.detail,
            }
        now = self._now()
        started = self._turn.run.created_at
        return self._turn.run.model_copy(
            update={
                "status": status,
                "stop_reason": stop,
                "completed_at": now,
                "metadata": metadata or None,
                "usage": usage_statistics(self._usage, self._steps, self._turn.run.id),
                "total_duration_ns": max(0, us_from_datetime(now) - us_from_datetime(started))
                * 1000,
            }
        )

    async def _commit(self, step: _Step | None, run: Run | None) -> None:
        pending = [m for m in [self._system, *self.new] if m.id not in self._committed]
        if step is None and not pending and run is None:
            return
        ids = [self._system.id, *(m.id for m in self._history), *(m.id for m in self.new)]
        changes: dict[str, Any] = {
            "message_ids": ids,
            "updated_at": max(self._now(), self._turn.agent.updated_at),
        }
        if run is not None and run.status != "running":
            changes.update(
                last_stop_reason=run.stop_reason,
                last_run_completion=run.completed_at,
                last_run_duration_ms=(run.total_duration_ns or 0) // 1_000_000,
            )
        agent = self._turn.agent.model_copy(update=changes)
        record = None
        if step is not None:
            record = Step(
                id=step.id,
                run_id=self._turn.run.id,
                agent_id=agent.id,
                model=self._turn.llm_config.model,
                model_endpoint=self._turn.llm_config.model_endpoint,
                provider_name=self._turn.llm_config.provider_name,
                prompt_tokens=step.usage.prompt_tokens,
                completion_tokens=step.usage.completion_tokens,
                total_tokens=step.usage.total_tokens,
                created_at=self._now(),
            )
        executor = self._executor
        await self._env.store.commit_step(
            StepCommit(
                agent=agent,
                messages=tuple(pending),
                blocks_changed=tuple(executor.changed.values()),
                blocks_created=tuple(executor.created.values()),
                blocks_detached=tuple(executor.detached),
                passages=tuple(executor.passages),
                run=run,
                step=record,
            )
        )
        self._committed.update(m.id for m in pending)
        if pending or executor.passages:
            self._memory.notify_written()
        executor.changed.clear()
        executor.created.clear()
        executor.detached.clear()
        executor.passages.clear()

    async def _emit_step(self, step: _Step) -> None:
        emit = self._turn.emit
        if emit is None:
            return
        for message in self.new[step.start :]:
            if (
                self._turn.stream_tokens
                and message.role == "assistant"
                and not message.approval_request
            ):
                continue  # already streamed token by token
            for item in self.render(message):
                await emit(item)

    def render(self, message: Message) -> list[dict[str, Any]]:
        items = expand(
            message,
            text_is_assistant=not self._heartbeat,
            use_assistant_message=self._turn.use_assistant_message,
        )
        return [item.model_dump(mode="json") for item in items]


class _DeltaStreamer:
    """Token streaming: each model delta goes out at once as a partial Letta message that
    shares the assistant message's id; item otids follow the order kinds first appear."""

    def __init__(self, runner: _TurnRunner, message_id: str, step_id: str) -> None:
        self._runner = runner
        self._id = message_id
        self._step_id = step_id
        self._indexes: dict[str, int] = {}

    def _base(self, kind: str, message_type: str) -> dict[str, Any]:
        index = self._indexes.setdefault(kind, len(self._indexes))
        return {
            "id": self._id,
            "date": self._runner._now().isoformat(),
            "message_type": message_type,
            "otid": item_otid(self._id, index),
            "run_id": self._runner._turn.run.id,
            "step_id": self._step_id,
        }

    async def on_delta(self, delta: LlmDelta) -> None:
        emit = self._runner._turn.emit
        assert emit is not None, "token streaming without a consumer"
        if delta.reasoning:
            await emit(
                {**self._base("reasoning", "reasoning_message"), "reasoning": delta.reasoning}
            )
        if delta.content:
            if self._runner._heartbeat:
                item = {**self._base("text", "reasoning_message"), "reasoning": delta.content}
            else:
                item = {**self._base("text", "assistant_message"), "content": delta.content}
            await emit(item)
        if delta.tool_call_index is not None:
            call: dict[str, Any] = {"arguments": delta.arguments or ""}
            if delta.tool_name:
                call["name"] = delta.tool_name
            if delta.tool_call_id:
                call["tool_call_id"] = delta.tool_call_id
            kind = f"tool/{delta.tool_call_index}"
            await emit({**self._base(kind, "tool_call_message"), "tool_call": call})

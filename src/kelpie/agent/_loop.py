"""The agent loop: one turn of an agent, step by step. Each step asks the model, runs the
tools it called, and commits everything the step changed (messages, block edits with their
history entries, archival and working-memory writes, run state, the step record) in one
transaction before any of it is streamed as final or acknowledged.

Per agent type (letta-api.md §3.1): `letta_v1_agent` and `sleeptime_agent` end the turn on
a reply without tool calls; `memgpt_agent`, `memgpt_v2_agent` and `react_agent` continue
only on `request_heartbeat`, a failed tool, or a continue rule.
"""

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Sequence
from typing import Any, Final

from kelpie.agent._compaction import (
    NothingToCompact,
    chars_over_window,
    compaction_mode,
    plan_compaction,
    summarize,
    summary_fields,
)
from kelpie.agent._context import message_chars
from kelpie.agent._events import DeltaStreamer, closing_items
from kelpie.agent._prompt import append_available_skills, compile_system_prompt, uses_line_numbers
from kelpie.agent._render import SEND_MESSAGE_TOOL, expand
from kelpie.agent._returns import package_return, truncate_return
from kelpie.agent._rules import ToolRuleSolver
from kelpie.agent._turn import ApprovalReply, Item, Turn, TurnResult, to_chat
from kelpie.env import Env
from kelpie.llm import ChatMessage, LlmError, LlmRequest, LlmResponse, ToolCall, ToolSpec, Usage
from kelpie.memory import MemorySearch
from kelpie.obs import TraceAttr
from kelpie.schemas import (
    MESSAGE_PREFIX,
    RETURN_CHAR_LIMIT_DEFAULT,
    STEP_PREFIX,
    Message,
    Run,
    RunEvent,
    Step,
    StopReason,
    StoredToolCall,
    Tool,
    ToolResult,
    UsageStatistics,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.storage import StepCommit, ThreadUpdate
from kelpie.tools import CodeResume, ToolOutcome, ToolRegistry, ToolSession, default_registry

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
DENIED_TOOL_CALL: Final = "Error: request to call tool denied. User reason: {reason}"
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
        self._registry = default_registry(env)

    async def run_turn(self, turn: Turn) -> TurnResult:
        """Runs the turn on `turn.context`, which then holds what the turn committed. When
        it raises, the context may be stale: the caller drops it."""
        return await _TurnRunner(self._env, self._memory, self._registry, turn).run()


@dataclasses.dataclass
class _Step:
    id: str
    start: int  # index in runner.new of the step's first message
    usage: Usage = dataclasses.field(default_factory=Usage)


class _TurnRunner:
    def __init__(
        self,
        env: Env,
        memory: MemorySearch,
        registry: ToolRegistry,
        turn: Turn,
    ) -> None:
        self._env = env
        self._memory = memory
        self._turn = turn
        self._registry = registry
        self._solver = ToolRuleSolver(turn.agent.tool_rules)
        self._tools = {tool.name: tool for tool in turn.tools}
        # The turn's calls in order, code's own included (rules count them all).
        self._called: list[str] = []
        self._session = ToolSession(
            env,
            memory,
            agent=turn.agent,
            run_id=turn.run.id,
            blocks=list(turn.blocks),
            environment=turn.tool_environment,
            tools=self._tools,
            terminal=self._solver.terminal,
            needs_approval=self._solver.needs_approval | set(turn.client_tool_names),
            max_count=self._solver.max_count,
            called=self._called,
        )
        # History is in creation order: its last message is the newest.
        context = turn.context
        last = context.last
        self._floor_us = us_from_datetime(last.created_at) if last is not None else 0
        # The thread's messages before the turn, their chat form and characters: read-only
        # here (the context is updated when the turn is over), replaced by compaction.
        self._history = context.history
        self._history_chat = context.chat
        self._history_chars = context.chars
        # Messages of the history not stored yet (a compaction's summary).
        self._unsaved: list[Message] = []
        # Whether the next commit writes the thread's whole list (after a compaction, or
        # when the thread had no system message); otherwise it appends to it.
        self._replaced = context.system is None
        self._system = context.system or self._message(role="system", text="")
        self._head = context.head
        self._appended = 0  # how many of self.new the stored list has
        self._chat_forms: dict[str, tuple[Message, list[ChatMessage]]] = {}
        self._system_dirty = True
        # Stream items that go out with the next commit besides the step's messages.
        self._extra_items: list[Item] = []
        self.new: list[Message] = []
        if turn.approval is None:
            self.new = [self._message(**fields) for fields in turn.input]
        self._committed: set[str] = set() if context.system is None else {self._system.id}
        self._last_output: str | None = None
        self._usage = Usage()
        self._steps = 0
        self._heartbeat = turn.agent.agent_type in HEARTBEAT_AGENT_TYPES

    async def run(self) -> TurnResult:
        turn = self._turn
        with self._env.tracing.turn(turn.agent.id, turn.run.id, turn.agent.agent_type) as span:
            result = await self._run()
            span.set_attribute(TraceAttr.STOP_REASON, result.stop_reason)
            span.set_attribute(TraceAttr.STEPS, result.steps)
            if result.error is not None:
                span.fail(result.error.error_type)
        return result

    async def _run(self) -> TurnResult:
        started_s = self._env.clock.monotonic_s()
        stop: StopReason = "max_steps"
        error: LlmError | None = None
        try:
            outcome = await self._resume_approval() if self._turn.approval else None
            for _ in range(self._turn.max_steps if outcome is None else 0):
                if self._turn.cancelled.is_set():
                    outcome = "cancelled"
                    break
                outcome = await self._step()
                if outcome is not None:
                    break
            stop = outcome or stop
        except LlmError as failure:
            stop, error = "llm_api_error", failure
        run = self._final_run(stop, error)
        problem = None if error is None else (error.error_type, str(error), error.detail)
        closing = closing_items(run.id, stop, self._usage_statistics(), problem)
        await self._commit(None, run, closing, final=True)
        self._settle_context()
        elapsed_s = self._env.clock.monotonic_s() - started_s
        self._env.metrics.record_turn(stop, self._steps, elapsed_s)
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
        with self._env.tracing.step():
            return await self._run_step()

    async def _run_step(self) -> StopReason | None:
        turn = self._turn
        step = _Step(id=self._env.entropy.new_id(STEP_PREFIX), start=len(self.new))
        self._env.tracing.annotate(TraceAttr.STEP_ID, step.id)
        allowed, must_call = self._solver.allowed(
            list(self._tools), self._called, self._last_output
        )
        specs = [self._spec(self._tools[name]) for name in allowed]
        specs += [spec for spec in turn.client_tools if spec.name not in self._tools]
        await self._compact_if_full(specs)
        self._recompile()
        system = to_chat([self._request_system()])
        # The kept history, unless a compaction in this turn replaced it.
        kept = self._history_chat is turn.context.chat
        request = LlmRequest(
            config=turn.llm_config,
            messages=(*system, *self._history_chat, *self._new_chat()),
            tools=tuple(specs),
            tool_choice="required" if must_call and allowed else None,
            parallel_tool_calls=bool(turn.llm_config.parallel_tool_calls),
            history=turn.context.encodings if kept else None,
            history_start=len(system),
            history_len=len(self._history_chat) if kept else 0,
        )
        assistant_id = self._env.entropy.new_id(MESSAGE_PREFIX)
        streamer = self._streamer(assistant_id, step.id) if turn.stream_tokens else None
        answer = turn.llm.complete(request, streamer.on_delta if streamer else None)
        response = await _unless_cancelled(answer, turn.cancelled)
        if response is None:
            return "cancelled"
        self._usage = add_usage(self._usage, response.usage)
        step.usage = response.usage
        self._steps += 1
        self.new.append(self._assistant(assistant_id, step.id, response))
        stop = await self._after_response(response, step.id)
        if stop is None and self._steps >= turn.max_steps:
            stop = "max_steps"
        await self._commit_step(step, self._running_run() if stop is None else None)
        return stop

    async def _after_response(self, response: LlmResponse, step_id: str) -> StopReason | None:
        if not response.tool_calls:
            missing = self._solver.missing_before_exit(self._called)
            if missing:
                nudge = REQUIRED_BEFORE_EXIT_NUDGE.format(tools=", ".join(missing))
                self.new.append(self._message(role="user", text=nudge, hidden=True))
                return None
            return "max_tokens_exceeded" if response.finish_reason == "length" else "end_turn"
        waiting = [call.id for call in response.tool_calls if self._needs_approval(call.name)]
        if waiting:
            # Calls that need no approval run when the reply comes, after the others.
            update = {"approval_request": True, "approval_tool_call_ids": waiting}
            self.new[-1] = self.new[-1].model_copy(update=update)
            return "requires_approval"
        outcomes = await self._run_tools(response.tool_calls)
        if outcomes and outcomes[-1][1].paused is not None:
            ran = {call.id for call, _ in outcomes}
            unrun = [call for call in response.tool_calls if call.id not in ran]
            return self._wait_for_code(outcomes, unrun, step_id)
        return self._after_tools(outcomes, step_id, heartbeat_needed=self._heartbeat)

    def _wait_for_code(
        self,
        outcomes: Sequence[tuple[ToolCall, ToolOutcome]],
        unrun: Sequence[ToolCall],
        step_id: str | None,
    ) -> StopReason:
        """Code stopped at a call that needs approval (the last outcome): the calls that ran
        get their returns, and an approval request for the code's call is added, holding
        what the code runs again with and the step's calls still to run."""
        *ran, (call, outcome) = outcomes
        assert outcome.paused is not None, "only a paused call waits"
        for done, done_outcome in ran:
            self._record_return(done, done_outcome, step_id)
        pause = outcome.paused.model_copy(
            update={
                "call": StoredToolCall(id=call.id, name=call.name, arguments=call.arguments),
                "then": [
                    StoredToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in unrun
                ],
            }
        )
        self.new.append(
            self._message(
                role="assistant",
                tool_calls=[pause.waiting],
                approval_request=True,
                approval_tool_call_ids=[pause.waiting.id],
                code_pause=pause,
                step_id=step_id,
            )
        )
        return "requires_approval"

    def _after_tools(
        self,
        outcomes: Sequence[tuple[ToolCall, ToolOutcome]],
        step_id: str | None,
        *,
        heartbeat_needed: bool,
    ) -> StopReason | None:
        """Records the returns; a terminal tool ends the turn. Heartbeat agents go on only
        when asked to, when a tool failed, or under a continue rule."""
        stop: StopReason | None = None
        keep_going = not heartbeat_needed
        for call, outcome in outcomes:
            self._record_return(call, outcome, step_id)
            if call.name in self._solver.terminal:
                # A reply through send_message is an ordinary end of turn.
                stop = "end_turn" if call.name == SEND_MESSAGE_TOOL else "tool_rule"
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

    async def _compact_if_full(self, specs: Sequence[ToolSpec]) -> None:
        """Summarises the oldest history away when the next request would overflow the
        context window (before the call, so a full thread never bricks the agent)."""
        window = self._turn.llm_config.context_window
        tools_chars = sum(len(str(spec.parameters)) + len(spec.description) for spec in specs)
        chars = message_chars(self._system) + self._history_chars + tools_chars
        chars += sum(message_chars(m) for m in self.new)
        if len(self._history) < 2 or not chars_over_window(chars, window):
            return
        mode, prompt = compaction_mode(self._turn.agent.compaction_settings)
        try:
            chosen = plan_compaction(self._history, mode)
        except NothingToCompact:
            return
        summary = await summarize(self._turn.llm, self._turn.llm_config, chosen.evicted, prompt)
        total = len(self._history) + len(self.new)
        fields = summary_fields(summary, len(chosen.evicted), total, self._now(), self._timezone())
        message = self._message(**fields)
        self._history = [message, *chosen.kept]
        self._history_chat = to_chat(self._history)
        self._history_chars = sum(message_chars(m) for m in self._history)
        self._unsaved.append(message)
        self._replaced = True
        self._system_dirty = True
        if self._turn.include_compaction_messages:
            stats = {
                "trigger": "context_window_limit",
                "context_window": window,
                "messages_count_before": total + 1,
                "messages_count_after": len(self._history) + len(self.new) + 1,
            }
            self._extra_items += [
                {**item, "compaction_stats": stats} for item in self.render(message)
            ]

    def _needs_approval(self, tool_name: str) -> bool:
        return tool_name in self._turn.client_tool_names or tool_name in self._solver.needs_approval

    async def _resume_approval(self) -> StopReason | None:
        """Answers the pending request: client results are recorded, approved calls and
        the calls that needed no approval run, denied ones return the reason. Then the
        loop goes on (the model sees the results) unless a terminal tool ran."""
        reply = self._turn.approval
        assert reply is not None, "resuming without a reply"
        request = reply.request
        self.new.append(self._message(role="approval", **reply.message))
        pause = request.code_pause
        stored_calls = request.tool_calls if pause is None else [pause.waiting, *pause.then]
        calls = [ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in stored_calls]
        outcomes: list[tuple[ToolCall, ToolOutcome]] = []
        stop: StopReason | None = None
        for index, call in enumerate(calls):
            answered = self._answered(call.id, reply)
            if pause is not None and index == 0:
                # The code's call: its code runs again, the reply answering the call.
                call = ToolCall(
                    id=pause.call.id, name=pause.call.name, arguments=pause.call.arguments
                )
                waiting = (pause.waiting.name, json.loads(pause.waiting.arguments))
                reply_answer = None if answered is None else (answered.ok, answered.returned)
                self._session.code_resumes[call.id] = CodeResume(
                    answers=pause.answers, waiting=waiting, reply=reply_answer
                )
                outcome = await self._run_tool(call)
            else:
                outcome = answered or await self._run_tool(call)
            outcomes.append((call, outcome))
            if outcome.paused is not None:
                stop = self._wait_for_code(outcomes, calls[index + 1 :], request.step_id)
                break
        if stop is None:
            stop = self._after_tools(outcomes, request.step_id, heartbeat_needed=False)
        sent = [m for m in self.new if m.role == "tool" or m.code_pause is not None]
        self.new += [self._message(**fields) for fields in self._turn.input]
        await self._commit_step(None, self._running_run() if stop is None else None, sent)
        return stop

    @staticmethod
    def _answered(call_id: str, reply: ApprovalReply) -> ToolOutcome | None:
        """What the reply says of a call: the client's result, a denial, or (None) run it."""
        result = reply.results.get(call_id)
        decision = reply.decisions.get(call_id)
        if result is not None:
            return _client_outcome(result)
        if decision is not None and not decision.approve:
            return ToolOutcome(DENIED_TOOL_CALL.format(reason=decision.reason), False, {})
        return None

    async def _run_tools(self, calls: Sequence[ToolCall]) -> list[tuple[ToolCall, ToolOutcome]]:
        """Runs a step's calls. Those that may run concurrently (sandboxed tools that do not
        touch the agent's state) start at once; the rest run one by one, in order, beside
        them. Returns come back in call order whatever order the calls finish in."""
        started = {
            call.id: asyncio.ensure_future(self._run_tool(call))
            for call in calls
            if self._registry.runs_concurrently(self._tools.get(call.name))
        }
        done: dict[str, ToolOutcome] = {}
        try:
            for call in calls:
                if call.id not in started:
                    done[call.id] = await self._run_tool(call)
                    if done[call.id].paused is not None:
                        break  # code waits for approval: the calls after it wait with it
            for call_id, task in started.items():
                done[call_id] = await task
        finally:
            for task in started.values():
                task.cancel()
        ran = [(call, done[call.id]) for call in calls if call.id in done]
        # A paused call goes last: the calls before it (and those that ran beside) returned.
        return sorted(ran, key=lambda pair: pair[1].paused is not None)

    async def _run_tool(self, call: ToolCall) -> ToolOutcome:
        return await self._registry.execute(self._session, call, self._tools.get(call.name))

    def _record_return(self, call: ToolCall, outcome: ToolOutcome, step_id: str | None) -> None:
        tool = self._tools.get(call.name)
        limit = tool.return_char_limit if tool is not None else RETURN_CHAR_LIMIT_DEFAULT
        returned = "None" if outcome.returned is None else outcome.returned
        if limit is not None:
            returned = truncate_return(returned, limit)
        # What a client ran is passed on as it came; what ran here is packaged as Letta does.
        packaged = (
            returned
            if outcome.from_client
            else package_return(returned, ok=outcome.ok, now=self._now(), timezone=self._timezone())
        )
        self.new.append(
            self._message(
                role="tool",
                text=packaged,
                tool_call_id=call.id,
                tool_name=call.name,
                tool_return=returned,
                tool_status="success" if outcome.ok else "error",
                stdout=outcome.stdout,
                stderr=outcome.stderr,
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

    def _request_system(self) -> Message:
        """The system message as this request sends it: the client's skills are listed for
        this turn only, never stored."""
        if not self._turn.client_skills:
            return self._system
        text = append_available_skills(
            self._system.text or "",
            blocks=list(self._session.blocks.values()),
            client_skills=self._turn.client_skills,
        )
        return self._system.model_copy(update={"text": text})

    def _recompile(self) -> None:
        turn, agent = self._turn, self._turn.agent
        text = compile_system_prompt(
            system=turn.system_override or agent.system,
            blocks=list(self._session.blocks.values()),
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
        if self._system_dirty or self._session.memory_changed:
            if text != self._system.text:
                self._system = self._system.model_copy(update={"text": text})
                self._committed.discard(self._system.id)
            self._system_dirty = False
            self._session.memory_changed = False

    # Runs, commits, events ---------------------------------------------------------------

    def _usage_statistics(self) -> UsageStatistics:
        return usage_statistics(self._usage, self._steps, self._turn.run.id)

    def _running_run(self) -> Run:
        return self._turn.run.model_copy(
            update={"status": "running", "usage": self._usage_statistics()}
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

    async def _commit_step(
        self, step: _Step | None, run: Run | None, sent: Sequence[Message] | None = None
    ) -> None:
        """Commits a step, with the stream items of what it added (by default, every
        message since the step began; the user's input is never echoed)."""
        if sent is None:
            assert step is not None, "a commit without a step names what it sends"
            sent = self.new[step.start :]
        items = [item for message in sent if self._sends(message) for item in self.render(message)]
        items, self._extra_items = [*self._extra_items, *items], []
        await self._commit(step, run, items, final=False)

    def _sends(self, message: Message) -> bool:
        """Token streaming already sent the assistant's own messages, piece by piece."""
        streamed = self._turn.stream_tokens and message.code_pause is None
        return not (streamed and message.role == "assistant")

    async def _commit(
        self, step: _Step | None, run: Run | None, items: Sequence[Item], *, final: bool
    ) -> None:
        # Only what the turn added or changed: the history before it is stored already.
        pending = [
            m for m in [self._system, *self._unsaved, *self.new] if m.id not in self._committed
        ]
        if step is None and not pending and run is None and not items:
            return
        replaced = self._replaced
        thread = ThreadUpdate(
            agent_id=self._turn.agent.id,
            conversation_id=self._turn.conversation_id,
            message_ids=self._thread_ids() if replaced else None,
            appended=() if replaced else tuple(m.id for m in self.new[self._appended :]),
            updated_at=max(self._now(), self._turn.agent.updated_at),
            finished_run=run if run is not None and run.status != "running" else None,
        )
        session = self._session
        memory_set, memory_deleted = session.working_memory.written()
        commit = StepCommit(
            thread=thread,
            messages=tuple(pending),
            blocks_changed=tuple(session.changed),
            blocks_created=tuple(session.created.values()),
            blocks_detached=tuple(session.detached),
            passages=tuple(session.passages),
            working_memory_set=memory_set,
            working_memory_deleted=memory_deleted,
            run=run,
            step=None if step is None else self._step_record(step),
        )

        async def write(events: tuple[RunEvent, ...]) -> None:
            with self._env.tracing.commit(final=final, messages=len(pending)):
                started_s = self._env.clock.monotonic_s()
                await self._env.store.commit_step(dataclasses.replace(commit, events=events))
                self._env.metrics.record_step_commit(self._env.clock.monotonic_s() - started_s)

        await self._turn.events.commit(items, write, final=final)
        self._committed.update(m.id for m in pending)
        self._head = thread.next_head(self._head)
        self._replaced, self._appended, self._unsaved = False, len(self.new), []
        if pending or session.passages:
            self._memory.notify_written()
        session.committed()

    def _thread_ids(self) -> tuple[str, ...]:
        """The thread's whole in-context list (written after a compaction)."""
        return (self._system.id, *(m.id for m in self._history), *(m.id for m in self.new))

    def _new_chat(self) -> list[ChatMessage]:
        """The chat form of the turn's messages, each made once."""
        chat: list[ChatMessage] = []
        for message in self.new:
            made = self._chat_forms.get(message.id)
            if made is None or made[0] is not message:
                made = (message, to_chat([message]))
                self._chat_forms[message.id] = made
            chat += made[1]
        return chat

    def _settle_context(self) -> None:
        """The thread's kept context now holds what the turn committed."""
        context = self._turn.context
        if self._history is context.history:
            context.system = self._system
            context.extend(self.new)
        else:
            context.reset([self._system, *self._history, *self.new])
        context.head = self._head

    def _step_record(self, step: _Step) -> Step:
        config = self._turn.llm_config
        return Step(
            id=step.id,
            run_id=self._turn.run.id,
            agent_id=self._turn.agent.id,
            model=config.model,
            model_endpoint=config.model_endpoint,
            provider_name=config.provider_name,
            prompt_tokens=step.usage.prompt_tokens,
            completion_tokens=step.usage.completion_tokens,
            total_tokens=step.usage.total_tokens,
            created_at=self._now(),
        )

    def _streamer(self, message_id: str, step_id: str) -> DeltaStreamer:
        return DeltaStreamer(
            events=self._turn.events,
            message_id=message_id,
            step_id=step_id,
            run_id=self._turn.run.id,
            now_iso=lambda: self._now().isoformat(),
            text_is_reasoning=self._heartbeat,
            needs_approval=self._needs_approval,
        )

    def render(self, message: Message) -> list[dict[str, Any]]:
        items = expand(
            message,
            text_is_assistant=not self._heartbeat,
            use_assistant_message=self._turn.use_assistant_message,
        )
        return [item.model_dump(mode="json") for item in items]


def _client_outcome(result: ToolResult) -> ToolOutcome:
    returned = result.tool_return
    if not isinstance(returned, str):
        returned = "\n".join(getattr(part, "text", "") for part in returned)
    return ToolOutcome(
        returned,
        result.status == "success",
        {},
        stdout=result.stdout,
        stderr=result.stderr,
        from_client=True,
    )


async def _unless_cancelled(
    answer: Awaitable[LlmResponse], cancelled: asyncio.Event
) -> LlmResponse | None:
    """The model's answer, or None if the run is cancelled first (the call is abandoned)."""
    if cancelled.is_set():
        return None
    call = asyncio.ensure_future(answer)
    stop = asyncio.ensure_future(cancelled.wait())
    try:
        await asyncio.wait([call, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if call.done():
        return call.result()
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    return None

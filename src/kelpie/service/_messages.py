"""Sending messages to an agent's threads (a turn, as a run), reading their history, and
runs. A send takes the thread's lock, is checked against the thread's state (a pending
approval), and runs as JSON, as a live stream, or as a background run whose stored
stream any client can follow and resume."""

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Collection
from typing import Any, Final

from kelpie.agent import (
    HEARTBEAT_AGENT_TYPES,
    AgentLoop,
    NoEvents,
    NothingToCompact,
    ThreadContext,
    Turn,
    TurnEvents,
    TurnResult,
    closing_items,
    compaction_mode,
    expand_all,
    plan_compaction,
    summarize,
    summary_fields,
    usage_statistics,
)
from kelpie.env import Env
from kelpie.errors import Conflict, InvalidInput, NotFound, Unavailable
from kelpie.llm import LlmClient, LlmProviderFailed, MeteredLlm, ToolSpec
from kelpie.memory import MemorySearch, archive_id_of
from kelpie.runtime import Activation, AgentRuntime
from kelpie.schemas import (
    MESSAGE_PREFIX,
    RUN_PREFIX,
    AgentState,
    AgentUpdate,
    CompactionResponse,
    Conversation,
    LettaMessage,
    LettaRequest,
    LettaResponse,
    LlmConfig,
    Message,
    MessageCreate,
    Run,
    RunEvent,
    Step,
    StopReasonOut,
    UsageStatistics,
    datetime_from_us,
)
from kelpie.service._agents import AgentService
from kelpie.service._housekeeping import Housekeeping
from kelpie.service._streams import LiveStream, StoredStream, follow_run
from kelpie.service._threads import (
    Thread,
    check_reply,
    pending_request,
    read_input,
    request_token,
)
from kelpie.storage import MessageQuery, Page, RunQuery, StepCommit, ThreadUpdate

RUN_TASKS_MAX: Final = 10_000
NOTHING_TO_COMPACT: Final = (
    "Summarization failed to reduce the number of messages. You may not have enough"
    " messages to compact or need to use a different CompactionSettings (e.g. using `all`"
    " mode)."
)
CHARS_PER_TOKEN: Final = 4
_ACTIVE: Final = ("created", "running")


@dataclasses.dataclass(frozen=True)
class Reattached:
    """A retried background send: the run it already started, to follow from the start."""

    run: Run


class StartedTurn:
    """A turn whose thread lock is held; `run` runs it and releases the lock."""

    def __init__(
        self,
        service: "MessageService",
        thread: Thread,
        turn: Turn,
        stack: contextlib.AsyncExitStack,
        stream: LiveStream | StoredStream | None,
        activation: Activation,
    ) -> None:
        self.agent = thread.agent
        self.thread = thread
        self.turn = turn
        self.stream = stream
        self._service = service
        self._stack = stack
        self._activation = activation

    async def run(self) -> TurnResult:
        runtime = self._service._runtime
        conversation_id = self.turn.conversation_id
        async with self._stack:
            try:
                result = await self._service._loop.run_turn(self.turn)
            except BaseException as error:
                # What the turn committed before it failed is not in the kept context.
                runtime.keep_context(self._activation, conversation_id, None)
                await self._service._fail_run(self.turn.run, error, self.stream)
                raise
            finally:
                if self.stream is not None:
                    await self.stream.close()
            # Counted again at its new size.
            runtime.keep_context(self._activation, conversation_id, self.turn.context)
            return result


class MessageService:
    def __init__(
        self, env: Env, agents: AgentService, runtime: AgentRuntime, memory: MemorySearch
    ) -> None:
        self.env = env
        self._env = env
        self._agents = agents
        self._runtime = runtime
        self._loop = AgentLoop(env, memory)
        self._background: list[asyncio.Task[TurnResult]] = []
        # Prunes the streams of background runs no longer served, as runs end.
        self.housekeeping = Housekeeping(env)
        # Background runs in progress here: readers wait on them for new events.
        self._streams: dict[str, StoredStream] = {}

    # Turns ----------------------------------------------------------------------------

    def new_run(
        self, agent_id: str, conversation_id: str | None, request: LettaRequest, *, background: bool
    ) -> Run:
        return Run(
            id=self._env.entropy.new_id(RUN_PREFIX),
            agent_id=agent_id,
            conversation_id=conversation_id,
            status="created",
            background=background,
            callback_url=request.callback_url,
            request_config={
                "use_assistant_message": request.use_assistant_message,
                "assistant_message_tool_name": request.assistant_message_tool_name,
                "assistant_message_tool_kwarg": request.assistant_message_tool_kwarg,
                "include_return_message_types": request.include_return_message_types,
            },
            created_at=datetime_from_us(self._env.clock.now_us()),
            request_token=request_token(request),
        )

    async def thread(
        self, agent_id: str, conversation_id: str | None, *, message_ids: bool = True
    ) -> Thread:
        """The thread with the agent's blocks, tools and secrets; with `message_ids` False,
        without its in-context ids (a turn reads them through `_thread_context`)."""
        agent = await self._agents.retrieve(
            agent_id, ("agent.blocks", "agent.tools", "agent.secrets"), message_ids=message_ids
        )
        secrets = {secret.key: secret.value or "" for secret in agent.secrets}
        agent = agent.model_copy(update={"secrets": [], "tool_exec_environment_variables": []})
        conversation = None
        if conversation_id is not None:
            conversation = await self._env.store.get_conversation(
                conversation_id, message_ids=message_ids
            )
            if conversation is None or conversation.agent_id != agent_id:
                raise NotFound(f"Conversation {conversation_id} not found")
        return Thread(agent, conversation, secrets)

    async def _thread_context(self, activation: Activation, thread: Thread) -> ThreadContext:
        """The thread's in-context messages: the activation's copy while the store's head
        of the thread is the one the copy has, else read anew (once per activation, or
        after the list changed outside turns) and kept."""
        store = self._env.store
        agent_id, conversation_id = thread.agent.id, thread.conversation_id
        kept = self._runtime.kept_context(activation, conversation_id)
        fresh = await store.context_since(
            agent_id, conversation_id, None if kept is None else kept.head
        )
        if fresh is None and kept is not None:
            if kept.system is None:
                return kept
            # The system message is rewritten in place (recompiled outside turns too).
            found = await store.get_messages([kept.system.id])
            if found:
                kept.system = found[0]
                return kept
            fresh = await store.context_since(agent_id, conversation_id, None)
        assert fresh is not None, "a head of None is never current"
        context = ThreadContext(fresh.head, await store.get_messages(fresh.ids))
        self._runtime.keep_context(activation, conversation_id, context)
        return context

    async def find_retry(self, run: Run) -> Reattached | None:
        """A background send whose otids started a run already follows that run."""
        if run.request_token is None or not run.background:
            return None
        found = await self._env.store.find_run_by_request_token(run.agent_id, run.request_token)
        return None if found is None else Reattached(found)

    async def start_turn(
        self, request: LettaRequest, run: Run, *, stream: LiveStream | StoredStream | None = None
    ) -> StartedTurn:
        """Checks the request, takes the thread's lock, then checks the send against the
        thread (a pending approval): every refusal (400, 404, 409) is raised here, before
        a stream starts."""
        sent = read_input(request)
        stack = contextlib.AsyncExitStack()
        activation = await stack.enter_async_context(
            self._runtime.turn(run.agent_id, run.conversation_id, run.id)
        )
        try:
            thread = await self.thread(run.agent_id, run.conversation_id, message_ids=False)
            context = await self._thread_context(activation, thread)
            reply = check_reply(pending_request(context.last), sent)
            turn = await self._turn(thread, request, run, sent.user, stream, context)
            turn = dataclasses.replace(
                turn, approval=reply, cancelled=activation.cancel_event(run.id)
            )
            await self._env.store.save_run(run.model_copy(update={"status": "running"}))
        except BaseException:
            await stack.aclose()
            raise
        if isinstance(stream, StoredStream):
            self._streams[run.id] = stream
        return StartedTurn(self, thread, turn, stack, stream, activation)

    async def _turn(
        self,
        thread: Thread,
        request: LettaRequest,
        run: Run,
        user: list[dict[str, object]],
        stream: TurnEvents | None,
        context: ThreadContext,
    ) -> Turn:
        agent = thread.agent
        llm_config = self._llm_config(agent, thread.conversation, request)
        client_tools = request.client_tools or []
        return Turn(
            agent=agent,
            blocks=agent.blocks,
            tools=agent.tools,
            llm=self._client_for(llm_config),
            llm_config=llm_config,
            run=run,
            conversation_id=thread.conversation_id,
            context=context,
            input=user,
            max_steps=request.max_steps,
            stream_tokens=request.stream_tokens,
            events=stream or NoEvents(),
            client_tool_names=frozenset(tool.name for tool in client_tools),
            tool_environment=thread.secrets,
            client_tools=tuple(
                ToolSpec(
                    name=tool.name,
                    description=tool.description or "",
                    parameters=tool.parameters or {"type": "object", "properties": {}},
                )
                for tool in client_tools
            ),
            client_skills=tuple(
                (skill.name, skill.description, skill.location)
                for skill in request.client_skills or []
            ),
            system_override=request.override_system,
            use_assistant_message=request.use_assistant_message,
            include_compaction_messages=request.include_compaction_messages,
            recall_count=max(0, len(context) - 1),
            archival_count=await self._env.store.count_passages(archive_id_of(agent.id)),
        )

    def _llm_config(
        self, agent: AgentState, conversation: Conversation | None, request: LettaRequest
    ) -> LlmConfig:
        """The request's model, else the conversation's, else the agent's; a conversation
        keeps the agent's context window unless it sets its own."""
        config = agent.llm_config
        handle = request.override_model or (conversation.model if conversation else None)
        if handle:
            resolved = self._env.models.resolve_llm(handle)
            config = resolved.model_copy(update={"context_window": config.context_window})
        if conversation is not None and conversation.context_window_limit is not None:
            config = config.model_copy(update={"context_window": conversation.context_window_limit})
        return config

    def _client_for(self, llm_config: LlmConfig) -> LlmClient:
        try:
            client = self._env.llm.client_for(llm_config)
        except LlmProviderFailed as error:
            if error.retryable:
                raise
            raise InvalidInput(f"The agent's model cannot be used: {error.detail}") from error
        return MeteredLlm(
            client,
            self._env.metrics,
            self._env.clock,
            provider=llm_config.model_endpoint_type,
            model=llm_config.model,
            tracing=self._env.tracing,
        )

    async def _fail_run(
        self, run: Run, error: BaseException, stream: LiveStream | StoredStream | None
    ) -> None:
        """A turn that died (a storage fault, a crash of the task) ends its run failed, and
        its stored stream with an error; if even that write fails, start-up recovery
        ends it."""
        self._streams.pop(run.id, None)
        message = str(error) or type(error).__name__
        failed = run.model_copy(
            update={
                "status": "failed",
                "stop_reason": "error",
                "completed_at": max(datetime_from_us(self._env.clock.now_us()), run.created_at),
                "metadata": {"error": {"error_type": "internal_error", "message": message}},
            }
        )
        events: list[RunEvent] = []
        if isinstance(stream, StoredStream) and not stream.finished:
            usage = run.usage or UsageStatistics(run_ids=[run.id])
            items = closing_items(run.id, "error", usage, ("internal_error", message, message))
            events = stream.closing_events(items)
        with contextlib.suppress(Unavailable):
            await self._env.store.save_run(failed, events)

    async def send_and_wait(
        self, agent_id: str, conversation_id: str | None, request: LettaRequest
    ) -> LettaResponse:
        """A turn answered when it is over: Letta's JSON reply (no stream)."""
        run = self.new_run(agent_id, conversation_id, request, background=False)
        started = await self.start_turn(request, run)
        result = await started.run()
        return self.response(started.agent, request, result)

    def response(
        self, agent: AgentState, request: LettaRequest, result: TurnResult
    ) -> LettaResponse:
        """Letta's JSON reply: the turn's messages without the client's own input."""
        produced = [m for m in result.messages if m.role not in ("user", "approval")]
        items = render(agent, produced, request.include_return_message_types,
                       request.use_assistant_message)  # fmt: skip
        return LettaResponse(
            messages=items,
            stop_reason=StopReasonOut(stop_reason=result.stop_reason),
            usage=usage_statistics(result.usage, result.steps, result.run.id),
        )

    def run_detached(self, started: StartedTurn) -> None:
        """Runs the turn apart from any request: it finishes and commits whoever listens."""
        self._background = [task for task in self._background if not task.done()]
        if len(self._background) >= RUN_TASKS_MAX:
            raise Unavailable(f"Too many background runs in progress (limit {RUN_TASKS_MAX})")
        task = asyncio.ensure_future(started.run())
        run_id = started.turn.run.id

        def finished(done: asyncio.Task[TurnResult]) -> None:
            self._streams.pop(run_id, None)
            self.housekeeping.run_ended()
            # A turn that died has already ended its run failed (StartedTurn.run).
            if not done.cancelled():
                done.exception()

        task.add_done_callback(finished)
        self._background.append(task)

    async def queue_turn(self, request: LettaRequest, run: Run) -> None:
        """Starts the turn detached from the request (`/messages/async`); refusals (400,
        404, 409) are still raised here."""
        started = await self.start_turn(request, run, stream=self.stored_stream(run))
        self.run_detached(started)

    def stored_stream(self, run: Run) -> StoredStream:
        return StoredStream(self._env, run.id)

    def follow(self, run: Run, starting_after: int, batch_size: int) -> AsyncIterator[RunEvent]:
        """The run's stream from after `starting_after`, live while the run goes on."""
        live = self._streams.get(run.id)
        return follow_run(self._env, run.id, starting_after, batch_size, live)

    def cancel(self, agent_id: str, run_ids: list[str] | None) -> dict[str, str]:
        """Stops the agent's runs (those named, or all) in every thread."""
        cancelled = self._runtime.cancel(agent_id, run_ids)
        return {run_id: "cancelled" for run_id in cancelled}

    def cancel_thread(self, agent_id: str, conversation_id: str | None) -> dict[str, str]:
        """Stops the run in progress in one thread."""
        cancelled = self._runtime.cancel(
            agent_id, None, conversation_id=conversation_id, any_conversation=False
        )
        return {run_id: "cancelled" for run_id in cancelled}

    async def run_of_otid(self, agent_id: str, otid: str) -> Run | None:
        """The run a one-message request with this otid started."""
        token = request_token(LettaRequest(messages=[MessageCreate(content="", otid=otid)]))
        if token is None:
            return None  # an empty otid: sends ignore those, so no run has it
        return await self._env.store.find_run_by_request_token(agent_id, token)

    async def compact(
        self, agent_id: str, conversation_id: str | None, settings: dict[str, Any] | None
    ) -> CompactionResponse:
        """Summarises the thread's older in-context messages into one, under the thread's
        lock (no turn runs meanwhile)."""
        marker = f"compaction-{self._env.entropy.new_id(RUN_PREFIX)}"
        async with self._runtime.turn(agent_id, conversation_id, marker):
            thread = await self.thread(agent_id, conversation_id)
            context = await self._env.store.get_messages(thread.context_ids)
            if not context:
                raise InvalidInput("No in-context messages found for this conversation.")
            system, history = context[0], context[1:]
            mode, prompt = compaction_mode(settings or thread.agent.compaction_settings)
            try:
                chosen = plan_compaction(history, mode)
            except NothingToCompact:
                raise InvalidInput(NOTHING_TO_COMPACT) from None
            llm_config = self._llm_config(thread.agent, thread.conversation, LettaRequest())
            summary = await summarize(
                self._client_for(llm_config), llm_config, chosen.evicted, prompt
            )
            now = datetime_from_us(self._env.clock.now_us())
            message = Message(
                id=self._env.entropy.new_id(MESSAGE_PREFIX),
                agent_id=agent_id,
                conversation_id=conversation_id,
                created_at=max(now, context[-1].created_at),
                **summary_fields(
                    summary, len(chosen.evicted), len(history), now, thread.agent.timezone or "UTC"
                ),
            )
            ids = (system.id, message.id, *(m.id for m in chosen.kept))
            update = ThreadUpdate(
                agent_id=agent_id, conversation_id=conversation_id, message_ids=ids, updated_at=now
            )
            await self._env.store.commit_step(StepCommit(thread=update, messages=(message,)))
        return CompactionResponse(
            summary=summary, num_messages_before=len(context), num_messages_after=len(ids)
        )

    # History --------------------------------------------------------------------------

    async def list_messages(
        self,
        agent_id: str,
        conversation_id: str | None,
        page: Page,
        include_types: Collection[str] | None,
        use_assistant_message: bool,
        *,
        all_threads: bool = False,
    ) -> list[LettaMessage]:
        agent = await self._agents.retrieve(agent_id, ())
        shared: tuple[str, ...] = ()
        if conversation_id is not None:
            conversation = await self._env.store.get_conversation(conversation_id)
            if conversation is None or conversation.agent_id != agent_id:
                raise NotFound(f"Conversation {conversation_id} not found")
            shared = tuple(conversation.forked_message_ids)
        query = MessageQuery(
            agent_id=agent_id,
            conversation_id=conversation_id,
            all_threads=all_threads,
            shared_ids=shared,
        )
        messages = await self._env.store.list_messages(query, page)
        return render(agent, messages, include_types, use_assistant_message)

    async def reset(self, agent_id: str) -> AgentState:
        """Forgets the agent's history; its system message stays."""
        agent = await self._agents.retrieve(agent_id, ())
        if self._runtime.running_runs(agent_id):
            raise Conflict(f"Agent {agent_id} has a turn in progress; cancel it first")
        keep = agent.message_ids[:1]
        await self._env.store.delete_agent_messages(agent_id, keep)
        return await self._agents.update(agent.id, AgentUpdate(message_ids=keep))

    async def pending_approval(self, agent: AgentState) -> LettaMessage | None:
        """The approval request the agent's own thread waits on, as a client sees it."""
        last = await self._env.store.get_messages(agent.message_ids[-1:])
        pending = pending_request(last[0] if last else None)
        if pending is None:
            return None
        items = render(agent, [pending], {"approval_request_message"}, True)
        return items[0] if items else None

    # Runs -----------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        run = await self._env.store.get_run(run_id)
        if run is None:
            raise NotFound(f"Run {run_id} not found")
        return run

    async def list_runs(self, query: RunQuery, page: Page) -> list[Run]:
        return await self._env.store.list_runs(query, page)

    async def active_run(self, agent_id: str, conversation_id: str | None) -> Run | None:
        """The newest unfinished run of the thread."""
        query = RunQuery(
            agent_ids=(agent_id,), conversation_id=conversation_id or "", statuses=_ACTIVE
        )
        runs = await self._env.store.list_runs(query, Page(limit=1))
        return runs[0] if runs else None

    async def list_steps(self, run_id: str, page: Page) -> list[Step]:
        await self.get_run(run_id)
        return await self._env.store.list_steps(run_id, None, page)

    async def get_step(self, step_id: str) -> Step:
        step = await self._env.store.get_step(step_id)
        if step is None:
            raise NotFound(f"Step {step_id} not found")
        return step

    async def run_messages(self, run_id: str, page: Page) -> list[LettaMessage]:
        run = await self.get_run(run_id)
        agent = await self._agents.retrieve(run.agent_id, ())
        messages = await self._env.store.list_run_messages(run_id, page)
        return render(agent, messages, None, True)


def render(
    agent: AgentState,
    messages: list[Message],
    include_types: Collection[str] | None,
    use_assistant_message: bool,
) -> list[LettaMessage]:
    return expand_all(
        messages,
        text_is_assistant=agent.agent_type not in HEARTBEAT_AGENT_TYPES,
        include_types=include_types,
        use_assistant_message=use_assistant_message,
    )

"""Sending messages to agents (a turn, as a run), reading their history, and runs."""

import asyncio
import contextlib
import json
from collections.abc import Collection, Sequence
from typing import Any, Final

from kelpie.agent import AgentLoop, Emit, Turn, TurnResult, expand_all
from kelpie.env import Env
from kelpie.errors import Conflict, InvalidInput, NotFound, Unavailable, ValidationFailed
from kelpie.llm import LlmClient, LlmProviderFailed, ToolSpec
from kelpie.memory import MemorySearch, archive_id_of
from kelpie.runtime import AgentRuntime
from kelpie.schemas import (
    RUN_PREFIX,
    AgentState,
    AgentUpdate,
    LettaMessage,
    LettaRequest,
    LettaResponse,
    LlmConfig,
    Message,
    MessageCreate,
    Run,
    Step,
    StopReasonOut,
    TextContent,
    datetime_from_us,
)
from kelpie.service._agents import AgentService
from kelpie.storage import Page, RunQuery

DEFAULT_CONVERSATION: Final = "default"
RUN_TASKS_MAX: Final = 10_000
CHARS_PER_TOKEN: Final = 4


def _text_of(content: str | list[Any]) -> tuple[str, list[dict[str, Any]] | None]:
    if isinstance(content, str):
        return content, None
    parts: list[dict[str, Any]] = [part.model_dump() for part in content]
    text = "\n".join(part.text for part in content if isinstance(part, TextContent))
    return text, parts


def input_messages(request: LettaRequest) -> list[dict[str, Any]]:
    """The request's new messages as stored-message fields (Letta's validation rules)."""
    if request.messages is not None and request.input is not None:
        raise ValidationFailed("Provide either messages or input, not both")
    if request.input is not None:
        messages: list[Any] = [MessageCreate(role="user", content=request.input)]
    elif request.messages is None:
        raise ValidationFailed("Either messages or input must be provided")
    else:
        messages = list(request.messages)
    if not messages:
        raise ValidationFailed("Messages must not be empty")
    fields = []
    for message in messages:
        if not isinstance(message, MessageCreate):
            raise InvalidInput(
                f"Messages of type '{message.type}' (approvals, tool returns) are not supported"
                " by this Kelpie version yet"
            )
        text, parts = _text_of(message.content)
        fields.append(
            {
                "role": message.role,
                "text": text,
                "content_parts": parts,
                "otid": message.otid,
                "sender_id": message.sender_id,
                "name": message.name,
            }
        )
    return fields


class AwaitingApproval(Conflict):
    """Letta's 409 while a tool call waits for approval; letta-code matches the wording."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            "Cannot send a new message: The agent is waiting for approval on a tool call."
            " Please approve or deny the pending request before continuing."
        )
        self.pending_request_id = request_id


class StartedTurn:
    """A turn whose conversation lock is held; `run` runs it and releases the lock."""

    def __init__(
        self,
        env: Env,
        loop: AgentLoop,
        agent: AgentState,
        turn: Turn,
        stack: contextlib.AsyncExitStack,
    ) -> None:
        self.agent = agent
        self.turn = turn
        self._env = env
        self._loop = loop
        self._stack = stack

    async def run(self) -> TurnResult:
        async with self._stack:
            try:
                return await self._loop.run_turn(self.turn)
            except Exception as error:
                await self._fail_run(error)
                raise

    async def _fail_run(self, error: Exception) -> None:
        """A turn that died (a storage fault) ends its run failed, so it is not left
        running; if even that write fails, start-up recovery ends it."""
        run = self.turn.run
        failed = run.model_copy(
            update={
                "status": "failed",
                "stop_reason": "error",
                "completed_at": max(datetime_from_us(self._env.clock.now_us()), run.created_at),
                "metadata": {"error": {"error_type": "internal_error", "message": str(error)}},
            }
        )
        with contextlib.suppress(Unavailable):
            await self._env.store.save_run(failed)


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
        )

    async def start_turn(
        self, agent_id: str, request: LettaRequest, run: Run, *, emit: Emit | None = None
    ) -> "StartedTurn":
        """Checks the request, loads the agent and takes the conversation's lock: every
        reason to refuse (400, 404, 409) is raised here, before a stream starts."""
        fields = input_messages(request)
        agent = await self._agents.retrieve(agent_id, ("agent.blocks", "agent.tools"))
        await self._refuse_while_awaiting_approval(agent)
        stack = contextlib.AsyncExitStack()
        activation = await stack.enter_async_context(
            self._runtime.turn(agent_id, run.conversation_id, run.id)
        )
        try:
            turn = await self._turn(agent, request, run, fields, emit, activation.cancelled)
            await self._env.store.save_run(run.model_copy(update={"status": "running"}))
        except BaseException:
            await stack.aclose()
            raise
        return StartedTurn(self._env, self._loop, agent, turn, stack)

    async def _refuse_while_awaiting_approval(self, agent: AgentState) -> None:
        if not agent.message_ids:
            return
        found = await self._env.store.get_messages(agent.message_ids[-1:])
        if found and found[0].approval_request:
            raise AwaitingApproval(found[0].id)

    async def run_turn(
        self, agent_id: str, request: LettaRequest, run: Run, *, emit: Emit | None = None
    ) -> TurnResult:
        """One turn under the conversation's lock; every step is committed as it ends."""
        started = await self.start_turn(agent_id, request, run, emit=emit)
        return await started.run()

    async def _turn(
        self,
        agent: AgentState,
        request: LettaRequest,
        run: Run,
        fields: list[dict[str, Any]],
        emit: Emit | None,
        cancelled: Collection[str],
    ) -> Turn:
        llm_config = agent.llm_config
        if request.override_model:
            llm_config = self._env.models.resolve_llm(request.override_model)
        client_tools = {tool.name for tool in request.client_tools or []}
        return Turn(
            agent=agent,
            blocks=agent.blocks,
            tools=agent.tools,
            llm=self._client_for(llm_config),
            llm_config=llm_config,
            run=run,
            conversation_id=run.conversation_id,
            input=fields,
            max_steps=request.max_steps,
            stream_tokens=request.stream_tokens,
            emit=emit,
            client_tool_names=frozenset(client_tools),
            client_tools=tuple(
                ToolSpec(
                    name=tool.name,
                    description=tool.description or "",
                    parameters=tool.parameters or {"type": "object", "properties": {}},
                )
                for tool in request.client_tools or []
            ),
            system_override=request.override_system,
            use_assistant_message=request.use_assistant_message,
            recall_count=max(0, len(agent.message_ids) - 1),
            archival_count=await self._env.store.count_passages(archive_id_of(agent.id)),
            cancelled=lambda: run.id in cancelled,
        )

    def _client_for(self, llm_config: LlmConfig) -> LlmClient:
        try:
            return self._env.llm.client_for(llm_config)
        except LlmProviderFailed as error:
            if error.retryable:
                raise
            raise InvalidInput(f"The agent's model cannot be used: {error.detail}") from error

    def response(
        self, agent: AgentState, request: LettaRequest, result: TurnResult
    ) -> LettaResponse:
        """Letta's JSON reply: the turn's messages without the user's input."""
        from kelpie.agent import usage_statistics

        produced = [m for m in result.messages if m.role != "user"]
        items = render(agent, produced, request.include_return_message_types,
                       request.use_assistant_message)  # fmt: skip
        return LettaResponse(
            messages=items,
            stop_reason=StopReasonOut(stop_reason=result.stop_reason),
            usage=usage_statistics(result.usage, result.steps, result.run.id),
        )

    async def queue_turn(self, agent_id: str, request: LettaRequest, run: Run) -> None:
        """Starts the turn detached from the request (`/messages/async`); refusals (400,
        404, 409) are still raised here."""
        self._background = [task for task in self._background if not task.done()]
        if len(self._background) >= RUN_TASKS_MAX:
            raise Unavailable(f"Too many background runs in progress (limit {RUN_TASKS_MAX})")
        started = await self.start_turn(agent_id, request, run)
        self._background.append(asyncio.ensure_future(started.run()))

    def cancel(self, agent_id: str, run_ids: list[str] | None) -> dict[str, str]:
        cancelled = self._runtime.cancel(agent_id, run_ids)
        return {run_id: "cancelled" for run_id in cancelled}

    # History --------------------------------------------------------------------------

    async def list_messages(
        self,
        agent_id: str,
        conversation_id: str | None,
        page: Page,
        include_types: Collection[str] | None,
        use_assistant_message: bool,
    ) -> list[LettaMessage]:
        agent = await self._agents.retrieve(agent_id, ())
        messages = await self._env.store.list_messages(agent_id, conversation_id, page)
        return render(agent, messages, include_types, use_assistant_message)

    async def reset(self, agent_id: str) -> AgentState:
        """Forgets the agent's history; its system message stays."""
        agent = await self._agents.retrieve(agent_id, ())
        keep = agent.message_ids[:1]
        await self._env.store.delete_agent_messages(agent_id, keep)
        return await self._agents.update(agent.id, AgentUpdate(message_ids=keep))

    async def context(self, agent_id: str) -> dict[str, Any]:
        """Letta's ContextWindowOverview, with tokens estimated at four characters each
        (Kelpie does not ship a tokenizer per model)."""
        agent = await self._agents.retrieve(agent_id, ("agent.blocks", "agent.tools"))
        in_context = await self._env.store.get_messages(agent.message_ids)
        has_system = bool(in_context) and in_context[0].role == "system"
        system = (in_context[0].text or "") if has_system else ""
        core = "\n".join(f"<{b.label}>\n{b.value}\n</{b.label}>" for b in agent.blocks)
        functions = [tool.json_schema or {} for tool in agent.tools]
        function_chars = sum(len(json.dumps(f)) for f in functions)
        message_chars = sum(len(m.text or "") for m in in_context[1:])
        tokens = {
            "num_tokens_system": len(system) // CHARS_PER_TOKEN,
            "num_tokens_core_memory": len(core) // CHARS_PER_TOKEN,
            "num_tokens_messages": message_chars // CHARS_PER_TOKEN,
            "num_tokens_functions_definitions": function_chars // CHARS_PER_TOKEN,
            "num_tokens_summary_memory": 0,
            "num_tokens_external_memory_summary": 0,
        }
        return {
            "context_window_size_max": agent.llm_config.context_window,
            "context_window_size_current": sum(tokens.values()),
            "num_messages": len(in_context),
            "num_archival_memory": await self._env.store.count_passages(archive_id_of(agent.id)),
            "num_recall_memory": await self._env.store.count_messages(agent.id),
            **tokens,
            "external_memory_summary": "",
            "summary_memory": None,
            "system_prompt": system,
            "core_memory": core,
            "functions_definitions": functions,
            "messages": [m.model_dump(mode="json") for m in in_context],
        }

    # Runs -----------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run:
        run = await self._env.store.get_run(run_id)
        if run is None:
            raise NotFound(f"Run {run_id} not found")
        return run

    async def list_runs(self, query: RunQuery, page: Page) -> list[Run]:
        return await self._env.store.list_runs(query, page)

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
    messages: Sequence[Message],
    include_types: Collection[str] | None,
    use_assistant_message: bool,
) -> list[LettaMessage]:
    from kelpie.agent import HEARTBEAT_AGENT_TYPES

    return expand_all(
        messages,
        text_is_assistant=agent.agent_type not in HEARTBEAT_AGENT_TYPES,
        include_types=include_types,
        use_assistant_message=use_assistant_message,
    )

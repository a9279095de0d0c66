"""A turn's own work does not grow with its thread's history (issue 15): it reads no stored
message of the history once the activation keeps the thread, writes only what it added,
and makes the chat form of each message once. And what that changes stays correct: the
order of the history, the context after compaction, a list changed outside turns, a
restart that reads the thread anew."""

import asyncio
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import kelpie.agent._context
import kelpie.agent._loop
import kelpie.agent._turn
from kelpie.agent import ThreadContext
from kelpie.env import Config, Env, SystemClock, system_entropy
from kelpie.llm import (
    ChatMessage,
    LlmRequest,
    LlmResponse,
    ProviderCatalog,
    ScriptedProviders,
    Usage,
)
from kelpie.mcp import McpConnections
from kelpie.memory import HashingEmbedder, MemorySearch
from kelpie.runtime import AgentRuntime
from kelpie.sandbox import ProcessSandbox
from kelpie.schemas import (
    MESSAGE_PREFIX,
    AgentCreate,
    AgentUpdate,
    BlockCreate,
    LettaRequest,
    Message,
    MessageCreate,
    datetime_from_us,
)
from kelpie.service import AgentService, MessageService, prepare
from kelpie.storage import AgentQuery, Page, SqliteStore, StepCommit, ThreadUpdate
from kelpie.web import HttpWeb

MODEL = "openai/gpt-4o-mini"


class Harness:
    def __init__(self, data_dir: Path, *, context_window: int = 1_000_000) -> None:
        self.data_dir = data_dir
        self.context_window = context_window
        self.requests: list[LlmRequest] = []
        self.env = self._open()

    def _answer(self, request: LlmRequest) -> LlmResponse:
        self.requests.append(request)
        if request.messages[0].content and "compacting" in request.messages[0].content:
            return LlmResponse("a summary", (), "stop", Usage())
        return LlmResponse("OK", (), "stop", Usage())

    def _open(self) -> Env:
        config = Config(data_dir=self.data_dir, openai_api_key="sk-test")
        clock = SystemClock()
        return Env(
            clock=clock,
            entropy=system_entropy(),
            config=config,
            store=SqliteStore.open(self.data_dir / "kelpie.db"),
            models=ProviderCatalog(config, clock),
            llm=ScriptedProviders(self._answer),
            embedder=HashingEmbedder(),
            sandbox=ProcessSandbox(root_dir=self.data_dir / "sandbox", pool_size=0),
            mcp=McpConnections(),
            web=HttpWeb(),
        )

    async def start(self) -> None:
        await prepare(self.env)
        self.agents = AgentService(self.env)
        search = MemorySearch(self.env.store, self.env.embedder, self.env.clock)
        self.runtime = AgentRuntime(self.env.clock)
        self.messages = MessageService(self.env, self.agents, self.runtime, search)

    async def restart(self) -> None:
        await self.close()
        self.env = self._open()
        await self.start()

    async def close(self) -> None:
        await self.env.store.close()
        await self.env.sandbox.close()

    async def new_agent(self) -> str:
        created = await self.agents.create(
            AgentCreate(
                name="history",
                model=MODEL,
                context_window_limit=self.context_window,
                memory_blocks=[BlockCreate(label="human", value="A tester.")],
            )
        )
        return created.id

    async def grow(self, agent_id: str, length: int) -> None:
        """`length - 1` stored messages after the system message, written directly."""
        agent = await self.env.store.get_agent(agent_id)
        assert agent is not None
        start = self.env.clock.now_us() - 10 * (length + 10)
        messages = [
            Message(
                id=self.env.entropy.new_id(MESSAGE_PREFIX),
                agent_id=agent_id,
                role="user" if i % 2 == 0 else "assistant",
                text=f"old message {i}",
                created_at=datetime_from_us(start + i),
            )
            for i in range(length - 1)
        ]
        thread = ThreadUpdate(
            agent_id=agent_id,
            conversation_id=None,
            message_ids=(agent.message_ids[0], *(m.id for m in messages)),
            updated_at=agent.updated_at,
        )
        await self.env.store.commit_step(StepCommit(thread=thread, messages=tuple(messages)))

    async def turn(self, agent_id: str, text: str) -> None:
        request = LettaRequest(messages=[MessageCreate(role="user", content=text)])
        run = self.messages.new_run(agent_id, None, request, background=False)
        result = await (await self.messages.start_turn(request, run)).run()
        assert result.stop_reason == "end_turn"

    async def stored_ids(self, agent_id: str) -> list[str]:
        agent = await self.env.store.get_agent(agent_id)
        assert agent is not None
        return agent.message_ids

    async def stored_texts(self, agent_id: str) -> list[str | None]:
        messages = await self.env.store.get_messages(await self.stored_ids(agent_id))
        return [m.text for m in messages[1:]]


def _texts(request: LlmRequest) -> list[str | None]:
    return [m.content for m in request.messages[1:]]


class Counts:
    """What one turn read and wrote, and the messages it made chat forms of."""

    def __init__(self) -> None:
        self.messages_read = 0
        self.messages_written = 0
        self.ids_written = 0
        self.replaced = 0
        self.chat_made = 0


def _count(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Counts:
    counts = Counts()
    store = harness.env.store
    get_messages, commit_step = store.get_messages, store.commit_step

    async def counted_get(ids: Sequence[str]) -> list[Message]:
        counts.messages_read += len(ids)
        return await get_messages(ids)

    async def counted_commit(commit: StepCommit) -> None:
        counts.messages_written += len(commit.messages)
        counts.ids_written += len(commit.thread.appended) + len(commit.thread.message_ids or ())
        counts.replaced += commit.thread.message_ids is not None
        await commit_step(commit)

    monkeypatch.setattr(store, "get_messages", counted_get)
    monkeypatch.setattr(store, "commit_step", counted_commit)
    real = kelpie.agent._turn.to_chat

    def counted_to_chat(messages: Sequence[Message]) -> list[ChatMessage]:
        counts.chat_made += len(messages)
        return real(messages)

    for module in (kelpie.agent._loop, kelpie.agent._context):
        monkeypatch.setattr(module, "to_chat", counted_to_chat)
    return counts


def _run(tmp_path: Path, body: Callable[[Harness], Any], **options: Any) -> None:
    async def main() -> None:
        harness = Harness(tmp_path, **options)
        await harness.start()
        try:
            await body(harness)
        finally:
            await harness.close()

    asyncio.run(main())


def test_a_turns_work_does_not_grow_with_its_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_length: dict[int, tuple[int, ...]] = {}

    async def body(harness: Harness) -> None:
        for length in (10, 1_000):
            agent_id = await harness.new_agent()
            await harness.grow(agent_id, length)
            await harness.turn(agent_id, "warm up")  # reads the thread into the activation
            with monkeypatch.context() as patch:
                counts = _count(harness, patch)
                await harness.turn(agent_id, "measured")
            by_length[length] = (
                counts.messages_read,
                counts.messages_written,
                counts.ids_written,
                counts.replaced,
                counts.chat_made,
            )
            assert len(harness.requests[-1].messages) == length + 3, "the whole context is sent"

    _run(tmp_path, body)
    assert by_length[10] == by_length[1_000], by_length
    read, written, ids, replaced, chat = by_length[10]
    # The system message is read anew (it may be recompiled outside turns); the turn writes
    # the recompiled system message, the input and the reply; it appends two ids.
    assert (read, written, ids, replaced) == (1, 3, 2, 0)
    assert chat <= 5  # the system message per step, each new message once or twice


def test_history_keeps_its_order_across_turns_and_a_restart(tmp_path: Path) -> None:
    async def body(harness: Harness) -> None:
        agent_id = await harness.new_agent()
        for i in range(3):
            await harness.turn(agent_id, f"hello {i}")
        expected = ["hello 0", "OK", "hello 1", "OK", "hello 2", "OK"]
        assert await harness.stored_texts(agent_id) == expected
        assert _texts(harness.requests[-1]) == expected[:-1]
        ids = await harness.stored_ids(agent_id)
        await harness.restart()
        assert await harness.stored_ids(agent_id) == ids, "the in-context ids survive a restart"
        await harness.turn(agent_id, "after restart")
        assert _texts(harness.requests[-1]) == [*expected, "after restart"]
        assert await harness.stored_texts(agent_id) == [*expected, "after restart", "OK"]
        listed = await harness.agents.list_agents(AgentQuery(), Page(limit=10), ())
        assert [a.message_ids for a in listed if a.id == agent_id] == [
            await harness.stored_ids(agent_id)
        ]

    _run(tmp_path, body)


def test_a_list_changed_outside_turns_is_read_anew(tmp_path: Path) -> None:
    async def body(harness: Harness) -> None:
        agent_id = await harness.new_agent()
        for i in range(2):
            await harness.turn(agent_id, f"hello {i}")
        await harness.messages.reset(agent_id)
        await harness.turn(agent_id, "after reset")
        assert _texts(harness.requests[-1]) == ["after reset"]
        ids = await harness.stored_ids(agent_id)
        await harness.agents.update(agent_id, AgentUpdate(message_ids=ids[:2]))
        await harness.turn(agent_id, "after patch")
        assert _texts(harness.requests[-1]) == ["after reset", "after patch"]
        assert await harness.stored_texts(agent_id) == ["after reset", "after patch", "OK"]

    _run(tmp_path, body)


def test_compaction_in_a_turn_leaves_context_and_store_in_step(tmp_path: Path) -> None:
    async def body(harness: Harness) -> None:
        agent_id = await harness.new_agent()
        for i in range(12):
            await harness.turn(agent_id, f"message number {i} " + "x" * 400)
        stored = await harness.env.store.get_messages(await harness.stored_ids(agent_id))
        roles = [m.role for m in stored]
        assert roles[0] == "system"
        assert "summary" in roles, "the thread was compacted"
        await harness.turn(agent_id, "one more")
        stored = await harness.env.store.get_messages(await harness.stored_ids(agent_id))
        sent = [m.content for m in harness.requests[-1].messages[1:]]
        # The request carries exactly the stored context (summaries are sent as user text).
        assert sent == [m.text for m in stored[1:-1]]

    # ~12 turns of ~420 characters overflow 90% of a 1,000-token window.
    _run(tmp_path, body, context_window=1_000)


def test_a_failed_commit_drops_the_kept_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def body(harness: Harness) -> None:
        agent_id = await harness.new_agent()
        await harness.turn(agent_id, "hello")
        store = harness.env.store
        real = store.commit_step
        calls = itertools.count()

        async def failing(commit: StepCommit) -> None:
            if next(calls) == 1:  # the final commit, after the step committed
                raise RuntimeError("disk on fire")
            await real(commit)

        monkeypatch.setattr(store, "commit_step", failing)
        with pytest.raises(RuntimeError):
            await harness.turn(agent_id, "fails")
        monkeypatch.setattr(store, "commit_step", real)
        activation = harness.runtime.activation(agent_id)
        assert activation is not None
        assert harness.runtime.kept_context(activation, None) is None
        await harness.turn(agent_id, "again")
        assert _texts(harness.requests[-1]) == ["hello", "OK", "fails", "OK", "again"]

    _run(tmp_path, body)


def test_kept_contexts_are_bounded_by_bytes(tmp_path: Path) -> None:
    async def body(harness: Harness) -> None:
        context = ThreadContext(0, [])
        context.nbytes = 600
        runtime = AgentRuntime(harness.env.clock, context_bytes_max=1_000)
        for agent_id in ("a", "b"):
            async with runtime.turn(agent_id, None, f"run-{agent_id}") as activation:
                runtime.keep_context(activation, None, context)
        # Over the budget: the least recently used idle activation was put away.
        assert runtime.activation("a") is None
        assert runtime.context_bytes == 600
        async with runtime.turn("c", None, "run-c") as activation:
            runtime.keep_context(activation, None, context)
            assert runtime.activation("b") is None, "b's context freed for c's"
            assert runtime.context_bytes == 600

    _run(tmp_path, body)

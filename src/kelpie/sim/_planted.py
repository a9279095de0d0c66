"""Bugs planted on purpose, to show the simulator catches the kinds of mistakes it exists
for (tests and `python -m kelpie.sim --plant NAME`). Each wraps the real store, or (the
sandbox's, the MCP servers') replaces the simulated sandbox or MCP servers."""

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, cast, final

from kelpie.mcp import McpServerSpec, McpUnavailable
from kelpie.sandbox import HostCallAnswer, HostCalls, ToolJob, ToolJobResult
from kelpie.schemas import Block, BlockHistoryEntry, Passage, Run, RunEvent
from kelpie.sim._clock import SimClock
from kelpie.sim._mcp import McpFaultInjector, SimConnection, SimMcp
from kelpie.sim._sandbox import SandboxFaultInjector, SimSandbox
from kelpie.sim._sessions import SessionWorld, SimSession, SimSessions
from kelpie.storage import BlockChange, Page, StepCommit, Store

# How many later store calls a deferred write waits before it really commits.
_DEFER_CALLS: Final = 6


@final
class AckBeforeCommit:
    """Acknowledges block updates at once and commits them a few calls later: a crash in
    between loses a write the client was told had landed, and reads see the old value."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self._pending: list[tuple[int, Block, BlockChange]] = []
        self._calls = 0

    async def update_block(self, block: Block, *, change: BlockChange) -> None:
        self._pending.append((self._calls + _DEFER_CALLS, block, change))

    async def _flush_due(self) -> None:
        due = [(block, change) for at, block, change in self._pending if at <= self._calls]
        self._pending = [item for item in self._pending if item[0] > self._calls]
        for block, change in due:
            # A block deleted meanwhile takes its late write with it (the store asserts
            # that a change is of a stored block: the bug is the lost write, not a 500).
            if await self._inner.get_block(block.id) is not None:
                await self._inner.update_block(block, change=change)

    def __getattr__(self, name: str) -> Any:
        method: Callable[..., Awaitable[Any]] = getattr(self._inner, name)
        if name == "close":
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls += 1
            await self._flush_due()
            return await method(*args, **kwargs)

        return call


@final
class StaleBlockCache:
    """Caches blocks on first read and never invalidates: a read after an update returns
    what was there before (no faults needed to see it)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self._cache: dict[str, Block | None] = {}

    async def get_block(self, block_id: str) -> Block | None:
        if block_id not in self._cache:
            self._cache[block_id] = await self._inner.get_block(block_id)
        return self._cache[block_id]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@final
class LostBlockEdit:
    """Commits a step's messages but drops its block edits: an acknowledged memory edit
    is missing from the block."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    async def commit_step(self, commit: StepCommit) -> None:
        await self._inner.commit_step(dataclasses.replace(commit, blocks_changed=()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@final
class LostWorkingMemoryWrite:
    """Commits a step without its working-memory writes: a key an agent's tool reported
    stored is missing."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    async def commit_step(self, commit: StepCommit) -> None:
        lost = dataclasses.replace(commit, working_memory_set=(), working_memory_deleted=())
        await self._inner.commit_step(lost)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@final
class StaleBlockHistory:
    """Caches a block's history on first read and never invalidates it: a read after a
    change misses the change."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self._cache: dict[tuple[str, Page], list[BlockHistoryEntry]] = {}

    async def list_block_history(self, block_id: str, page: Page) -> list[BlockHistoryEntry]:
        if (block_id, page) not in self._cache:
            self._cache[block_id, page] = await self._inner.list_block_history(block_id, page)
        return self._cache[block_id, page]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@final
class DeferredPassages:
    """Acknowledges archival inserts at once and writes them a few calls later: a crash in
    between loses a passage the client was told was stored, and search cannot find it."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self._pending: list[tuple[int, Sequence[Passage]]] = []
        self._calls = 0

    async def insert_passages(self, passages: Sequence[Passage]) -> None:
        self._pending.append((self._calls + _DEFER_CALLS, passages))

    def __getattr__(self, name: str) -> Any:
        method: Callable[..., Awaitable[Any]] = getattr(self._inner, name)
        if name == "close":
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            self._calls += 1
            due = [batch for at, batch in self._pending if at <= self._calls]
            self._pending = [(at, batch) for at, batch in self._pending if at > self._calls]
            for batch in due:
                await self._inner.insert_passages(batch)
            return await method(*args, **kwargs)

        return call


@final
class UnendedStreams:
    """Fails a run without storing the end of its stream (start-up recovery, a turn that
    died): readers of the run wait for an end that never comes."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    async def save_run(self, run: Run, events: Sequence[RunEvent] = ()) -> None:
        await self._inner.save_run(run, ())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@final
class PoolNeverRefills(SimSandbox):
    """Forgets to replace a worker a crash or a timeout killed: the warm pool shrinks for
    good, and every call after the last worker is lost pays a cold start."""

    def lose_worker(self) -> None:
        self.starting += 1  # counted as starting, and never started


def _pool_never_refills(clock: SimClock, faults: SandboxFaultInjector, size: int) -> SimSandbox:
    return PoolNeverRefills(clock, faults, pool_size=size)


@final
class CodeCallTwice(SimSandbox):
    """Sends the first tool call of each code execution to the host twice (a worker that
    resends a call whose answer was slow to come, and an answer path that runs it again):
    the code's first memory edit lands twice in one step."""

    async def run_code(
        self,
        job: ToolJob,
        calls: HostCalls | None,
        crash: SandboxFaultInjector | None,
        namespace: dict[str, Any],
    ) -> ToolJobResult:
        if calls is None:
            return await super().run_code(job, calls, crash, namespace)
        answer = calls
        sent = 0

        async def resending(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
            nonlocal sent
            sent += 1
            if sent == 1:
                await answer(name, arguments)
            return await answer(name, arguments)

        return await super().run_code(job, resending, crash, namespace)


def _code_call_twice(clock: SimClock, faults: SandboxFaultInjector, size: int) -> SimSandbox:
    return CodeCallTwice(clock, faults, pool_size=size)


@final
class ForgetfulSessions(SimSessions):
    """Pauses a session without its state (a checkpoint image that is never written, or
    a restore that starts the session afresh): after a pause its code starts from nothing,
    though nothing was lost."""

    def image(self, session: SimSession) -> SimSession:
        return SimSession({"__name__": "__main__"}, session.last_used_s)


@final
class SessionForgetsWhenPaused(SimSandbox):
    def attach_sessions(self, world: SessionWorld, *, idle_s: float) -> None:
        self.sessions = ForgetfulSessions(world, self, self._clock, self._faults, idle_s=idle_s)


def _session_forgets_when_paused(
    clock: SimClock, faults: SandboxFaultInjector, size: int
) -> SimSandbox:
    return SessionForgetsWhenPaused(clock, faults, pool_size=size)


@final
class McpNeverReconnects(SimMcp):
    """After a server crashed mid-call, never connects to it again: every later call of its
    tools fails, faults or not."""

    def __init__(self, clock: SimClock, faults: McpFaultInjector) -> None:
        super().__init__(clock, faults)
        self._dead: set[str] = set()

    def _server_died(self, connection: SimConnection) -> None:
        self._dead.add(connection.spec.key)
        super()._server_died(connection)

    async def _connection(self, spec: McpServerSpec) -> SimConnection:
        if spec.key in self._dead:
            raise McpUnavailable(f"MCP server '{spec.name}' could not be reached.")
        return await super()._connection(spec)


@final
class McpConnectPerCall(SimMcp):
    """Drops the connection after every call without closing it (Letta's one connection
    per call, leaked): each call pays a start-up, and connections pile up."""

    def _after_call(self, connection: SimConnection) -> None:
        connection.alive = False
        if self._connections.get(connection.spec.key) is connection:
            del self._connections[connection.spec.key]


PLANTED_BUGS: Final[dict[str, Callable[[Store], Store]]] = {
    "lost_block_edit": lambda store: cast(Store, LostBlockEdit(store)),
    "ack_before_commit": lambda store: cast(Store, AckBeforeCommit(store)),
    "stale_block_cache": lambda store: cast(Store, StaleBlockCache(store)),
    "lost_working_memory_write": lambda store: cast(Store, LostWorkingMemoryWrite(store)),
    "stale_block_history": lambda store: cast(Store, StaleBlockHistory(store)),
    "deferred_passages": lambda store: cast(Store, DeferredPassages(store)),
    "unended_streams": lambda store: cast(Store, UnendedStreams(store)),
}
PLANTED_SANDBOX_BUGS: Final[
    dict[str, Callable[[SimClock, SandboxFaultInjector, int], SimSandbox]]
] = {
    "pool_never_refills": _pool_never_refills,
    "code_call_twice": _code_call_twice,
    "session_forgets_when_paused": _session_forgets_when_paused,
}
PLANTED_MCP_BUGS: Final[dict[str, Callable[[SimClock, McpFaultInjector], SimMcp]]] = {
    "mcp_never_reconnects": McpNeverReconnects,
    "mcp_connect_per_call": McpConnectPerCall,
}

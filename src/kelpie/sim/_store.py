"""A fault-injecting `Store`: wraps the real one and, per call, may fail it, delay it, or
crash the process before or after the write commits.

Faults are recorded against the request that suffered them (a context variable the
workload sets), so the invariant checker knows which 5xx answers a fault explains.
"""

import contextvars
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast, final

from kelpie.env import Clock, Entropy
from kelpie.sim._faults import STORAGE_LATENCY_S_MAX, FaultPlan
from kelpie.storage import StorageUnavailable, Store

# Every Store operation is one of these; a new operation must be classified here.
WRITE_OPERATIONS: Final = frozenset(
    {
        "insert_agent",
        "import_agents",
        "update_agent",
        "delete_agent",
        "attach_block",
        "detach_block",
        "attach_tool",
        "detach_tool",
        "insert_block",
        "update_block",
        "delete_block",
        "insert_tool",
        "update_tool",
        "upsert_tools",
        "delete_tool",
        "commit_step",
        "insert_messages",
        "delete_agent_messages",
        "save_run",
        "insert_conversation",
        "update_conversation",
        "delete_conversation",
        "append_run_events",
        "prune_run_streams",
        "set_working_memory",
        "delete_working_memory",
        "insert_passages",
        "delete_passage",
        "insert_archive",
        "update_archive",
        "delete_archive",
        "attach_archive",
        "detach_archive",
        "save_embeddings",
        "insert_mcp_server",
        "replace_mcp_server",
        "delete_mcp_server",
        "insert_api_key",
        "revoke_api_key",
        "touch_api_key",
    }
)
READ_OPERATIONS: Final = frozenset(
    {
        "get_mcp_server",
        "get_mcp_server_by_name",
        "list_mcp_servers",
        "mcp_server_tools",
        "get_api_key",
        "list_api_keys",
        "get_agent",
        "list_agents",
        "count_agents",
        "tags_of_agents",
        "blocks_of_agents",
        "tools_of_agents",
        "list_agent_blocks",
        "get_agent_block",
        "list_agent_tools",
        "list_tags",
        "get_block",
        "get_blocks",
        "list_blocks",
        "list_block_agents",
        "get_tool",
        "get_tools",
        "get_tools_by_name",
        "list_tools",
        "get_messages",
        "list_messages",
        "list_all_messages",
        "list_run_messages",
        "count_messages",
        "get_run",
        "list_runs",
        "active_runs",
        "list_steps",
        "get_step",
        "count_passages",
        "get_conversation",
        "context_since",
        "list_conversations",
        "list_run_events",
        "last_run_seq",
        "run_stream_pruned",
        "find_run_by_request_token",
        "list_block_history",
        "get_block_history_entry",
        "get_working_memory",
        "list_working_memory",
        "working_memory_keys",
        "list_passages",
        "get_archive",
        "list_archives",
        "archive_ids_of_agent",
        "keyword_search",
        "vector_search",
        "filtered_keys",
        "pending_embeddings",
        "stale_embeddings",
        "count_embeddings",
        "count_pending_embeddings",
        "passages_by_key",
        "messages_by_key",
    }
)
UNFAULTED_OPERATIONS: Final = frozenset({"close"})


class SimCrash(BaseException):
    """The simulated process died. A BaseException, so no handler in the server (which
    catches Exception to answer 500) can swallow it: it unwinds every request in flight."""


@dataclasses.dataclass
class RequestFaults:
    """Faults injected while serving one request."""

    kinds: list[str] = dataclasses.field(default_factory=list)


current_request: contextvars.ContextVar[RequestFaults | None] = contextvars.ContextVar(
    "current_request", default=None
)


def store_operations() -> frozenset[str]:
    return frozenset(
        name
        for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and callable(member)
    )


@final
class FaultyStore:
    def __init__(self, inner: Store, plan: FaultPlan, entropy: Entropy, clock: Clock) -> None:
        unclassified = (
            store_operations() - WRITE_OPERATIONS - READ_OPERATIONS - UNFAULTED_OPERATIONS
        )
        assert not unclassified, f"classify these Store operations: {sorted(unclassified)}"
        self._inner = inner
        self._plan = plan
        self._entropy = entropy
        self._clock = clock
        self.crashed = False

    def as_store(self) -> Store:
        # Every Store operation is served by __getattr__; the assert above keeps it so.
        return cast(Store, self)

    def _record(self, kind: str) -> None:
        faults = current_request.get()
        if faults is not None:
            faults.kinds.append(kind)

    def _wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        is_write = name in WRITE_OPERATIONS

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.crashed:
                raise SimCrash("process already crashed")
            plan, draw = self._plan, self._entropy.random
            if plan.storage_latency and draw() < plan.storage_latency:
                self._record("storage_latency")
                await self._clock.sleep(draw() * STORAGE_LATENCY_S_MAX)
            if is_write and plan.crash and draw() < plan.crash:
                after_commit = draw() < 0.5
                self._record("crash_after_commit" if after_commit else "crash_before_commit")
                self.crashed = True
                if after_commit:
                    await method(*args, **kwargs)
                raise SimCrash(f"crash {'after' if after_commit else 'before'} commit of {name}")
            failure = plan.storage_write_failure if is_write else plan.storage_read_failure
            if failure and draw() < failure:
                kind = "storage_write_failure" if is_write else "storage_read_failure"
                self._record(kind)
                raise StorageUnavailable(f"injected {kind} in {name}")
            return await method(*args, **kwargs)

        return call

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name in UNFAULTED_OPERATIONS or name.startswith("_"):
            return attribute
        return self._wrap(name, attribute)

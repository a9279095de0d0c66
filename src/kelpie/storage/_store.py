"""The Store protocol: intention-revealing operations, each one transaction.

Implementations: `SqliteStore` (the embedded default). Writes are atomic; a method that
returns has committed. Reads return the last committed state. Agents are written as
`AgentConfig` (relationships live in their own tables) and read as `AgentState` with the
relationships empty, for the service to fill as `include` asks.
"""

from collections.abc import Sequence
from typing import Protocol

from kelpie.schemas import Message, Passage
from kelpie.storage._roles import (
    AgentsAndBlocks,
    ApiKeys,
    Archives,
    Conversations,
    McpServers,
    MessagesAndRuns,
    WorkingMemory,
)
from kelpie.storage._search import SearchFilter, SearchKind, VectorRows


class Store(
    AgentsAndBlocks,
    MessagesAndRuns,
    Conversations,
    Archives,
    McpServers,
    WorkingMemory,
    ApiKeys,
    Protocol,
):
    """Everything a backend stores, role by role: the roles of kelpie.storage._roles, then
    search, which becomes a backend-neutral role as the PostgreSQL store gains it."""

    # Search (archival passages and recall messages): rows, FTS5 matches and vectors.
    async def keyword_search(self, search: SearchFilter, match: str, limit: int) -> list[int]: ...
    async def filtered_keys(self, search: SearchFilter) -> list[int]: ...
    async def vectors_since(
        self, kind: SearchKind, scope: str | None, model: str, after_vector_seq: int
    ) -> VectorRows: ...
    async def last_vector_seq(self, kind: SearchKind, scope: str | None) -> int: ...
    async def pending_embeddings(
        self, kind: SearchKind, scopes: Sequence[str], limit: int
    ) -> list[tuple[int, str]]: ...
    async def stale_embeddings(
        self, kind: SearchKind, model: str, after_seq: int, limit: int
    ) -> list[tuple[int, str]]: ...
    async def count_embeddings(self, kind: SearchKind, model: str) -> tuple[int, int]: ...
    async def count_pending_embeddings(self, kind: SearchKind, limit: int) -> int:
        """Rows of the kind still without a vector, counted up to `limit`."""
        ...

    async def save_embeddings(
        self, kind: SearchKind, model: str, dim: int, vectors: Sequence[tuple[int, bytes]]
    ) -> None: ...
    async def passages_by_key(self, seqs: Sequence[int]) -> dict[int, Passage]: ...
    async def messages_by_key(self, seqs: Sequence[int]) -> dict[int, Message]: ...

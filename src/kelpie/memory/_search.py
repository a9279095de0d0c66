"""Hybrid search over archival passages and recall messages, and the embedding worker.

A search ranks the rows a filter lets through twice, by vector similarity to the query and
by keyword relevance (each as the store does it: SQLite exactly and by FTS5 bm25,
PostgreSQL by pgvector and tsvector), and fuses the rankings by reciprocal rank.
Filters the store can check (scope, dates, roles, tags) apply before ranking;
a caller's own predicate applies to the fused rows in rank order, and the candidate pool
grows until `limit` rows pass or no candidates are left, so it too filters before top k.

The keyword ranking fused with the vector one holds the rows with every query word (see
`query_words`); keyword-only search ranks those first, then rows with any query word.

Durability: a row is searchable by keyword from the transaction that writes it. Its vector
is made afterwards, off the request path, by the worker (`run_worker`), which a restart
resumes from the rows still without one. A search first embeds up to
`PENDING_EMBEDDED_ON_SEARCH_MAX` pending rows of its scope itself, so what was just written
is found by meaning too; rows beyond that are found by keyword until the worker gets to them.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

from kelpie.env import Clock
from kelpie.errors import KelpieError
from kelpie.memory._archives import archive_id_of
from kelpie.memory._embedder import Embedder, EmbeddingFailed, vector_bytes
from kelpie.memory._fusion import query_words, reciprocal_rank_fusion
from kelpie.schemas import Message, Passage, SearchMode
from kelpie.storage import SEARCH_KINDS, SearchFilter, SearchKind, Store

if TYPE_CHECKING:
    from kelpie.memory._embedder import Vectors

PENDING_EMBEDDED_ON_SEARCH_MAX: Final = 256
WORKER_BATCH_ROWS: Final = 64
WORKER_RETRY_S: Final = 5.0
# The embedding queue's depth is counted up to this many rows a kind (a bounded walk of the
# pending index, for the metrics).
QUEUE_ROWS_COUNTED_MAX: Final = 100_000
SEARCH_POOL_MIN: Final = 50
_POOL_GROWTH: Final = 4

log = logging.getLogger(__name__)
Row = TypeVar("Row", Passage, Message)
Fetch = Callable[[Sequence[int]], Awaitable[Mapping[int, Row]]]


@final
class _Hits(Generic[Row]):
    """Fused candidates of one pool size, and whether a larger pool could add more."""

    def __init__(self, fused: list[tuple[int, float]], saturated: bool) -> None:
        self.fused = fused
        self.saturated = saturated


@final
class MemorySearch:
    def __init__(self, store: Store, embedder: Embedder, clock: Clock) -> None:
        self._store = store
        self._embedder = embedder
        self._clock = clock
        self._wake = asyncio.Event()

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    async def agent_archives(self, agent_id: str) -> tuple[str, ...]:
        """The archives an agent searches: its own (even before it exists) and attached ones."""
        attached = await self._store.archive_ids_of_agent(agent_id)
        return tuple(sorted({archive_id_of(agent_id), *attached}))

    # Searching -------------------------------------------------------------------------

    async def search_passages(
        self, search: SearchFilter, query: str, limit: int, mode: SearchMode = "hybrid"
    ) -> list[tuple[Passage, float]]:
        assert search.kind == "passage", "a passage search needs a passage filter"
        return await self._search(search, query, limit, mode, self._store.passages_by_key)

    async def search_messages(
        self,
        search: SearchFilter,
        query: str,
        limit: int,
        mode: SearchMode = "hybrid",
        accept: Callable[[Message], bool] | None = None,
    ) -> list[tuple[Message, float]]:
        assert search.kind == "message", "a message search needs a message filter"
        return await self._search(search, query, limit, mode, self._store.messages_by_key, accept)

    async def _search(
        self,
        search: SearchFilter,
        query: str,
        limit: int,
        mode: SearchMode,
        fetch: Fetch[Row],
        accept: Callable[[Row], bool] | None = None,
    ) -> list[tuple[Row, float]]:
        assert limit >= 1, "a search returns at least one row"
        if not query.strip():
            return await self._newest(search, limit, fetch, accept)
        if mode != "fts":
            await self._catch_up(search)
        pool = max(limit * _POOL_GROWTH, SEARCH_POOL_MIN)
        while True:
            hits: _Hits[Row] = await self._ranked(search, query, pool, mode)
            rows = await fetch([key for key, _ in hits.fused])
            gone = [key for key, _ in hits.fused if key not in rows]
            found = [
                (rows[key], score)
                for key, score in hits.fused
                if key in rows and (accept is None or accept(rows[key]))
            ]
            if len(found) >= limit or not (hits.saturated or gone):
                return found[:limit]
            pool *= _POOL_GROWTH

    async def _ranked(
        self, search: SearchFilter, query: str, pool: int, mode: SearchMode
    ) -> _Hits[Row]:
        """Vector ranking fused with the rows holding every query word; without a vector
        ranking (fts mode, or the embedder failing), rows with every word come first, then
        rows with any."""
        rankings: list[list[int]] = []
        saturated = False
        if mode != "fts":
            vector = await self._query_vector(query, required=mode == "vector")
            if vector is not None:
                keys = await self._vector_ranking(search, vector, pool)
                saturated |= len(keys) >= pool
                rankings.append(keys)
        if mode != "vector":
            words = query_words(query)
            tiers = () if not words else (True,) if rankings else (True, False)
            keys = []
            for every_word in tiers:
                found = await self._store.keyword_search(
                    search, words, every_word=every_word, limit=pool
                )
                saturated |= len(found) >= pool
                keys += [key for key in found if key not in keys]
            rankings.append(keys[:pool])
        return _Hits(reciprocal_rank_fusion(rankings), saturated)

    async def _vector_ranking(
        self, search: SearchFilter, vector: "Vectors", pool: int
    ) -> list[int]:
        ranked = await self._store.vector_search(
            search, self._embedder.model, vector_bytes(vector), pool
        )
        return [key for key, _ in ranked]

    async def _query_vector(self, query: str, *, required: bool) -> "Vectors | None":
        try:
            vectors = await self._embedder.embed([query])
        except EmbeddingFailed as error:
            if required:
                raise
            log.warning("searching by keyword only: %s", error.detail)
            return None
        query_vector: Vectors = vectors[0]
        return query_vector

    async def _newest(
        self,
        search: SearchFilter,
        limit: int,
        fetch: Fetch[Row],
        accept: Callable[[Row], bool] | None,
    ) -> list[tuple[Row, float]]:
        """No query: the newest rows the filters let through."""
        keys = sorted(await self._store.filtered_keys(search), reverse=True)
        found: list[tuple[Row, float]] = []
        for start in range(0, len(keys), limit * _POOL_GROWTH):
            chunk = keys[start : start + limit * _POOL_GROWTH]
            rows = await fetch(chunk)
            found += [
                (rows[k], 0.0) for k in chunk if k in rows and (accept is None or accept(rows[k]))
            ]
            if len(found) >= limit:
                break
        return found[:limit]

    # Embedding -------------------------------------------------------------------------

    async def _catch_up(self, search: SearchFilter) -> None:
        try:
            await self.embed_pending(search.kind, search.scopes, PENDING_EMBEDDED_ON_SEARCH_MAX)
        except EmbeddingFailed as error:
            log.warning("new rows are found by keyword until embedded: %s", error.detail)

    async def embed_pending(self, kind: SearchKind, scopes: Sequence[str], limit: int) -> int:
        """Embeds up to `limit` rows still without a vector; returns how many."""
        pending = await self._store.pending_embeddings(kind, scopes, limit)
        if not pending:
            return 0
        vectors = await self._embedder.embed([text for _, text in pending])
        await self._store.save_embeddings(
            kind,
            self._embedder.model,
            self._embedder.dim,
            [
                (key, vector_bytes(vector))
                for (key, _), vector in zip(pending, vectors, strict=True)
            ],
        )
        return len(pending)

    async def queue_rows(self) -> dict[SearchKind, int]:
        """Rows waiting for the worker, by kind, each counted up to `QUEUE_ROWS_COUNTED_MAX`."""
        return {
            kind: await self._store.count_pending_embeddings(kind, QUEUE_ROWS_COUNTED_MAX)
            for kind in SEARCH_KINDS
        }

    def notify_written(self) -> None:
        """New searchable rows were committed: the worker embeds them soon."""
        self._wake.set()

    async def run_worker(self) -> None:
        """Embeds rows without vectors until cancelled: everything pending at start (what a
        crash left), then whatever `notify_written` announces. Failures are retried."""
        while True:
            self._wake.clear()
            try:
                embedded = 0
                for kind in SEARCH_KINDS:
                    embedded += await self.embed_pending(kind, (), WORKER_BATCH_ROWS)
            except KelpieError as error:
                log.warning("embedding worker: %s; retrying in %s s", error.detail, WORKER_RETRY_S)
                await self._clock.sleep(WORKER_RETRY_S)
                continue
            if embedded == 0:
                await self._wake.wait()

    async def reembed(self, kind: SearchKind, batch_rows: int = WORKER_BATCH_ROWS) -> int:
        """Embeds every row of the kind whose vector is missing or made by another model
        (after the embedding model changed); returns how many."""
        done = 0
        after = 0
        while rows := await self._store.stale_embeddings(
            kind, self._embedder.model, after, batch_rows
        ):
            vectors = await self._embedder.embed([text for _, text in rows])
            await self._store.save_embeddings(
                kind,
                self._embedder.model,
                self._embedder.dim,
                [(key, vector_bytes(v)) for (key, _), v in zip(rows, vectors, strict=True)],
            )
            done += len(rows)
            after = rows[-1][0]
        return done

"""Exact vector search over one scope (an archive's passages, an agent's messages), from a
bounded in-memory cache of the scope's matrix: SQLite's vector index, and PostgreSQL's
where pgvector is missing or a dimension is beyond what its HNSW indexes take.

A search asks the store for the scope's newest vector write (one index lookup); a cache
that is behind loads only the vectors written since, into spare capacity. Vectors written
again (re-embedding) replace their rows; rows of deleted keys are dropped when a search
finds them gone. Scopes are evicted least recently used first when the cache is over its
byte budget. Exact search (a matrix-vector product) over 100k x 384 takes a few ms.
"""

import collections
import dataclasses
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, final

from kelpie.storage._search import SearchFilter, SearchKind, VectorRows

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

VECTOR_CACHE_BYTES_MAX: Final = 512 * 1024 * 1024
_CAPACITY_MIN: Final = 256
# Message roles as small codes, so a role filter is one vectorised comparison.
_ROLE_CODES: Final = {"": 0, "user": 1, "assistant": 2, "tool": 3, "system": 4}


@final
@dataclasses.dataclass(frozen=True)
class VectorFilter:
    start_us: int | None = None
    end_us: int | None = None
    roles: tuple[str, ...] = ()
    # Keys allowed by filters the cache cannot check itself (tags); None: no such filter.
    allowed: Collection[int] | None = None


@final
class _Scope:
    """One scope's vectors: rows [0, size) of preallocated arrays, grown by doubling."""

    def __init__(self, model: str, dim: int) -> None:
        import numpy as np

        self.model = model
        self.dim = dim
        self.size = 0
        self.last_vector_seq = 0
        self.row_of: dict[int, int] = {}
        self.seqs: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.created: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.roles: npt.NDArray[np.int8] = np.zeros(0, dtype=np.int8)
        self.live: npt.NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        self.matrix: npt.NDArray[np.float32] = np.zeros((0, dim), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.seqs.nbytes * 2 + self.live.nbytes * 2)

    def _grow(self, needed: int) -> None:
        import numpy as np

        capacity = max(_CAPACITY_MIN, len(self.seqs))
        while capacity < needed:
            capacity *= 2
        if capacity == len(self.seqs):
            return

        def grown(array: Any, shape: tuple[int, ...]) -> Any:
            bigger = np.zeros(shape, dtype=array.dtype)
            bigger[: self.size] = array[: self.size]
            return bigger

        self.seqs = grown(self.seqs, (capacity,))
        self.created = grown(self.created, (capacity,))
        self.live = grown(self.live, (capacity,))
        self.roles = grown(self.roles, (capacity,))
        self.matrix = grown(self.matrix, (capacity, self.dim))

    def add(self, rows: VectorRows) -> None:
        import numpy as np

        count = len(rows.seqs)
        self._grow(self.size + sum(1 for seq in rows.seqs if seq not in self.row_of))
        targets = np.empty(count, dtype=np.int64)
        for i, seq in enumerate(rows.seqs):
            row = self.row_of.get(seq)
            if row is None:
                row = self.row_of[seq] = self.size
                self.size += 1
            targets[i] = row
        if count:
            vectors = np.frombuffer(b"".join(rows.vectors), dtype="<f4")
            assert vectors.size == count * self.dim, "stored vectors have the wrong dimension"
            self.matrix[targets] = vectors.reshape(count, self.dim)
            self.seqs[targets] = rows.seqs
            self.created[targets] = rows.created_at_us
            self.roles[targets] = [_ROLE_CODES.get(role, 0) for role in rows.roles]
            self.live[targets] = True
        self.last_vector_seq = max(self.last_vector_seq, rows.last_vector_seq)

    def drop(self, seqs: Collection[int]) -> None:
        for seq in seqs:
            row = self.row_of.pop(seq, None)
            if row is not None:
                self.live[row] = False

    def rank(
        self, query: "npt.NDArray[np.float32]", keep: VectorFilter, count: int
    ) -> list[tuple[int, float]]:
        """The `count` best (key, cosine) pairs that pass the filter, best first; ties go
        to the lower key."""
        import numpy as np

        size = self.size
        if size == 0:
            return []
        mask = self.live[:size].copy()
        if keep.start_us is not None:
            mask &= self.created[:size] >= keep.start_us
        if keep.end_us is not None:
            mask &= self.created[:size] <= keep.end_us
        if keep.roles:
            codes = [_ROLE_CODES[role] for role in keep.roles if role in _ROLE_CODES]
            mask &= np.isin(self.roles[:size], np.array(codes, dtype=np.int8))
        if keep.allowed is not None:
            mask &= np.isin(self.seqs[:size], np.fromiter(keep.allowed, np.int64))
        candidates = np.flatnonzero(mask)
        if len(candidates) == 0:
            return []
        scores = (self.matrix[:size] @ query)[candidates]
        if count < len(candidates):
            best = np.argpartition(-scores, count)[:count]
        else:
            best = np.arange(len(candidates))
        keys = self.seqs[candidates[best]]
        order = np.lexsort((keys, -scores[best]))
        return [(int(keys[i]), float(scores[best][i])) for i in order]


class VectorSource(Protocol):
    """What the index reads from its backend: the vectors of a scope written after a point,
    and the newest vector write of a scope."""

    async def vectors_since(
        self, kind: SearchKind, scope: str | None, model: str, after_vector_seq: int
    ) -> VectorRows: ...
    async def last_vector_seq(self, kind: SearchKind, scope: str | None) -> int: ...
    async def filtered_keys(self, search: SearchFilter) -> list[int]: ...


@final
class VectorIndex:
    def __init__(self, store: VectorSource, bytes_max: int = VECTOR_CACHE_BYTES_MAX) -> None:
        assert bytes_max > 0, "cache budget must be positive"
        self._store = store
        self._bytes_max = bytes_max
        self._scopes: collections.OrderedDict[tuple[SearchKind, str | None], _Scope] = (
            collections.OrderedDict()
        )

    async def search(
        self, search: SearchFilter, model: str, query: bytes, limit: int
    ) -> list[tuple[int, float]]:
        """The `limit` rows the filter lets through whose vectors by `model` are nearest
        the query (float32 little-endian bytes) by cosine, best first, ties to the lower key."""
        import numpy as np

        assert query, "an empty query vector"
        assert len(query) % 4 == 0, "a query vector is whole float32s"
        vector = np.frombuffer(query, dtype="<f4")
        dim = len(vector)
        allowed = set(await self._store.filtered_keys(search)) if search.tags else None
        keep = VectorFilter(
            start_us=search.start_us, end_us=search.end_us, roles=search.roles, allowed=allowed
        )
        ranked: list[tuple[int, float]] = []
        for scope in search.scopes or (None,):
            cached = await self._fresh(search.kind, scope, model, dim)
            ranked += cached.rank(vector, keep, limit)
        ranked.sort(key=lambda hit: (-hit[1], hit[0]))
        return ranked[:limit]

    def forget(self, kind: SearchKind, seqs: Sequence[int]) -> None:
        """Keys found deleted: their rows stop taking part in any scope of the kind."""
        for (scope_kind, _), cached in self._scopes.items():
            if scope_kind == kind:
                cached.drop(seqs)

    async def _fresh(self, kind: SearchKind, scope: str | None, model: str, dim: int) -> _Scope:
        key = (kind, scope)
        cached = self._scopes.get(key)
        if cached is not None and (cached.model != model or cached.dim != dim):
            cached = None
        latest = await self._store.last_vector_seq(kind, scope)
        if cached is None or cached.last_vector_seq < latest:
            after = 0 if cached is None else cached.last_vector_seq
            rows = await self._store.vectors_since(kind, scope, model, after)
            cached = cached or _Scope(model, dim)
            cached.add(rows)
        self._scopes[key] = cached
        self._scopes.move_to_end(key)
        self._evict(keep=key)
        return cached

    def _evict(self, keep: tuple[SearchKind, str | None]) -> None:
        total = sum(scope.nbytes for scope in self._scopes.values())
        for key in list(self._scopes):
            if total <= self._bytes_max:
                break
            if key != keep:
                total -= self._scopes.pop(key).nbytes

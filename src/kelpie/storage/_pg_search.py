"""PostgreSQL rows behind memory search: the `_roles.Search` role (migration 0003).

Keyword search is the index row's generated `tsvector` ('english': stemmed, stopwords
dropped) under its GIN index, ranked by `ts_rank_cd`. Vector search is pgvector's: each
vector is also kept as `halfvec`, with one HNSW index per (kind, dimension), made the first
time a vector of that dimension is saved, so any embedding model fits (halfvec's HNSW takes
up to 4,000 dimensions, twice `vector`'s 2,000). Filtered searches use pgvector's iterative
index scans (pgvector 0.8+), so a filter that rejects most neighbours still yields
`limit` rows. Without
pgvector, or past 4,000 dimensions, search is exact, from the same in-process
`VectorIndex` SQLite uses, over the float32 bytes every row keeps.
"""

import re
from collections.abc import Sequence
from typing import Final, TypeVar

from kelpie.schemas import Message, Passage
from kelpie.storage._pg_rows import PgRows, qmarks
from kelpie.storage._search import SearchFilter, SearchKind, VectorRows
from kelpie.storage._search_sql import INDEX_TABLES, filter_conditions
from kelpie.storage._vector_index import VectorIndex

# halfvec's HNSW limit (pgvector 0.7+); larger vectors are searched exactly.
HNSW_DIM_MAX: Final = 4_000
# Candidates HNSW keeps while searching (pgvector's default is 40; more is better recall).
HNSW_EF_SEARCH: Final = 100
HNSW_EF_SEARCH_MAX: Final = 1_000  # pgvector's own ceiling
_WORD: Final = re.compile(r"\w+")

_Row = TypeVar("_Row", Passage, Message)


def tsquery_text(words: Sequence[str], *, every_word: bool) -> str:
    """`to_tsquery` input matching every (or any) of the words. Each word is quoted, and
    holds nothing but letters, digits and `_` (the caller's contract), so none is syntax."""
    assert words, "a keyword search needs a word"
    for word in words:
        assert _WORD.fullmatch(word), f"not a plain word: {word!r}"
    return (" & " if every_word else " | ").join(f"'{word}'" for word in words)


def halfvec_text(query: bytes) -> str:
    """The float32 little-endian bytes as pgvector's text form ('[x,y,...]')."""
    import numpy as np

    return "[" + ",".join(repr(float(x)) for x in np.frombuffer(query, dtype="<f4")) + "]"


class SearchRows(PgRows):
    pgvector: bool
    iterative_scans: bool
    _vector_index: VectorIndex
    _hnsw_indexed: set[tuple[SearchKind, int]]

    async def keyword_search(
        self, search: SearchFilter, words: Sequence[str], *, every_word: bool, limit: int
    ) -> list[int]:
        """Keys of the rows holding every (or any) of the words, best `ts_rank_cd` first.
        A query of stopwords only ('the', 'is') matches nothing: PostgreSQL drops them."""
        index = INDEX_TABLES[search.kind].name
        where, params = filter_conditions(search)
        conditions = " AND ".join(["i.tsv @@ q.query", *(qmarks(c) for c in where)])
        rows = await self._read(
            f"SELECT i.seq FROM {index} i, (SELECT to_tsquery('english', %s) AS query) q"
            f" WHERE {conditions} ORDER BY ts_rank_cd(i.tsv, q.query) DESC, i.seq LIMIT %s",
            [tsquery_text(words, every_word=every_word), *params, limit],
        )
        return [row[0] for row in rows]

    async def filtered_keys(self, search: SearchFilter) -> list[int]:
        index = INDEX_TABLES[search.kind].name
        where, params = filter_conditions(search)
        conditions = " AND ".join(qmarks(c) for c in where) or "TRUE"
        rows = await self._read(f"SELECT i.seq FROM {index} i WHERE {conditions}", params)
        return [row[0] for row in rows]

    async def vector_search(
        self, search: SearchFilter, model: str, query: bytes, limit: int
    ) -> list[tuple[int, float]]:
        """(key, cosine) of the rows nearest the query, best first: by HNSW where pgvector
        indexes the dimension, else exactly."""
        assert limit >= 1, "a search returns at least one row"
        dim = len(query) // 4
        if not self.pgvector or dim > HNSW_DIM_MAX:
            return await self._vector_index.search(search, model, query, limit)
        index = INDEX_TABLES[search.kind].name
        where, params = filter_conditions(search)
        # The dimension is a literal, so the planner matches the partial index `WHERE dim = D`.
        conditions = " AND ".join([f"i.dim = {dim}", "i.model = %s", *(qmarks(c) for c in where)])
        distance = f"i.embedding::halfvec({dim}) <=> %s::halfvec({dim})"
        vector = halfvec_text(query)
        ef_search = min(max(HNSW_EF_SEARCH, limit), HNSW_EF_SEARCH_MAX)
        async with self._tx() as db:
            if self.iterative_scans:
                await db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            await db.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
            cursor = await db.execute(
                f"SELECT i.seq, {distance} AS distance FROM {index} i WHERE {conditions}"
                " ORDER BY distance LIMIT %s",
                [vector, model, *params, limit],
            )
            rows = await cursor.fetchall()
        # Relaxed order: the iterative scan may return neighbours slightly out of order.
        ranked = [(int(seq), 1.0 - float(distance)) for seq, distance in rows]
        ranked.sort(key=lambda hit: (-hit[1], hit[0]))
        return ranked

    async def vectors_since(
        self, kind: SearchKind, scope: str | None, model: str, after_vector_seq: int
    ) -> VectorRows:
        """The scope's vectors by `model` written after `after_vector_seq` (exact search)."""
        table = INDEX_TABLES[kind]
        role = "role" if kind == "message" else "''"
        where = ["vector_seq > %s", "model = %s"]
        params: list[object] = [after_vector_seq, model]
        if scope is not None:
            where.insert(0, f"{table.scope} = %s")
            params.insert(0, scope)
        rows = await self._read(
            f"SELECT seq, created_at, {role}, vector FROM {table.name}"
            f" WHERE {' AND '.join(where)} ORDER BY seq",
            params,
        )
        return VectorRows(
            seqs=[row[0] for row in rows],
            created_at_us=[row[1] for row in rows],
            roles=[row[2] for row in rows],
            vectors=[bytes(row[3]) for row in rows],
            last_vector_seq=await self.last_vector_seq(kind, scope),
        )

    async def last_vector_seq(self, kind: SearchKind, scope: str | None) -> int:
        table = INDEX_TABLES[kind]
        if scope is None:
            rows = await self._read("SELECT value FROM search_counters WHERE name = %s", (kind,))
        else:
            rows = await self._read(
                f"SELECT max(vector_seq) FROM {table.name} WHERE {table.scope} = %s", (scope,)
            )
        return int(rows[0][0] or 0) if rows else 0

    async def pending_embeddings(
        self, kind: SearchKind, scopes: Sequence[str], limit: int
    ) -> list[tuple[int, str]]:
        """(key, text) of rows still without a vector, oldest first; scopes empty = any."""
        table = INDEX_TABLES[kind]
        where = ["vector IS NULL"]
        params: list[object] = []
        if scopes:
            where.append(f"{table.scope} = ANY(%s)")
            params.append(list(scopes))
        rows = await self._read(
            f"SELECT seq, text FROM {table.name} WHERE {' AND '.join(where)} ORDER BY seq LIMIT %s",
            [*params, limit],
        )
        return [(row[0], row[1]) for row in rows]

    async def stale_embeddings(
        self, kind: SearchKind, model: str, after_seq: int, limit: int
    ) -> list[tuple[int, str]]:
        index = INDEX_TABLES[kind].name
        rows = await self._read(
            f"SELECT seq, text FROM {index} WHERE seq > %s"
            " AND (vector IS NULL OR model IS DISTINCT FROM %s) ORDER BY seq LIMIT %s",
            (after_seq, model, limit),
        )
        return [(row[0], row[1]) for row in rows]

    async def count_embeddings(self, kind: SearchKind, model: str) -> tuple[int, int]:
        index = INDEX_TABLES[kind].name
        rows = await self._read(
            f"SELECT count(*) FILTER (WHERE model = %s AND vector IS NOT NULL), count(*)"
            f" FROM {index}",
            (model,),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def count_pending_embeddings(self, kind: SearchKind, limit: int) -> int:
        assert limit > 0, "a count up to nothing"
        index = INDEX_TABLES[kind].name
        rows = await self._read(
            f"SELECT count(*) FROM (SELECT 1 FROM {index} WHERE vector IS NULL LIMIT %s) p",
            (limit,),
        )
        return int(rows[0][0])

    async def save_embeddings(
        self, kind: SearchKind, model: str, dim: int, vectors: Sequence[tuple[int, bytes]]
    ) -> None:
        """Writes vectors by key (a key deleted meanwhile is skipped), each with the next
        vector sequence number; with pgvector also as halfvec, under an HNSW index for the
        dimension (made first, outside the write, if it does not exist yet)."""
        if not vectors:
            return
        for _, blob in vectors:
            assert len(blob) == dim * 4, "vector bytes do not match its dimension"
        indexed = self.pgvector and dim <= HNSW_DIM_MAX
        if indexed and (kind, dim) not in self._hnsw_indexed:
            await self._ensure_hnsw(kind, dim)
        index = INDEX_TABLES[kind].name
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE search_counters SET value = value + %s WHERE name = %s RETURNING value",
                (len(vectors), kind),
            )
            row = await cursor.fetchone()
            assert row is not None, f"no search counter for {kind}"
            first = int(row[0]) - len(vectors) + 1
            embedding = f", embedding = %s::halfvec({dim})" if indexed else ""
            await db.cursor().executemany(
                f"UPDATE {index} SET model = %s, dim = %s, vector = %s, vector_seq = %s"
                f"{embedding} WHERE seq = %s",
                [
                    (model, dim, blob, first + offset)
                    + ((halfvec_text(blob),) if indexed else ())
                    + (seq,)
                    for offset, (seq, blob) in enumerate(vectors)
                ],
            )

    async def _ensure_hnsw(self, kind: SearchKind, dim: int) -> None:
        assert 0 < dim <= HNSW_DIM_MAX, "HNSW indexes halfvec up to 4,000 dimensions"
        index = INDEX_TABLES[kind].name
        async with self._tx() as db:
            await db.execute(
                f"CREATE INDEX IF NOT EXISTS {index}_hnsw_{dim} ON {index}"
                f" USING hnsw ((embedding::halfvec({dim})) halfvec_cosine_ops) WHERE dim = {dim}"
            )
        self._hnsw_indexed.add((kind, dim))

    async def passages_by_key(self, seqs: Sequence[int]) -> dict[int, Passage]:
        return await self._rows_by_key("passage", seqs, Passage)

    async def messages_by_key(self, seqs: Sequence[int]) -> dict[int, Message]:
        return await self._rows_by_key("message", seqs, Message)

    async def _rows_by_key(
        self, kind: SearchKind, seqs: Sequence[int], model: type[_Row]
    ) -> dict[int, _Row]:
        table = INDEX_TABLES[kind]
        if not seqs:
            return {}
        rows = await self._read(
            f"SELECT i.seq, r.data FROM {table.name} i JOIN {table.rows} r"
            f" ON r.id = i.{table.row_id} WHERE i.seq = ANY(%s)",
            (list(seqs),),
        )
        found = {seq: model.model_validate_json(data) for seq, data in rows}
        self._vector_index.forget(kind, [seq for seq in seqs if seq not in found])
        return found

"""SQLite rows behind memory search: index rows, FTS5 rows and vectors (migration 0003).
A mixin of SqliteStore. Keyword ranking is FTS5's bm25; vector ranking is exact, from the
in-process `VectorIndex` over the stored vectors. Fusing the two is `kelpie.memory`'s."""

import sqlite3
from collections.abc import Sequence
from typing import Final, TypeVar

from kelpie.schemas import Message, Passage, us_from_datetime
from kelpie.storage._search import SearchFilter, SearchKind, VectorRows, message_search_text
from kelpie.storage._search_sql import INDEX_TABLES, filter_conditions
from kelpie.storage._sql import SQL_VARIABLES_MAX, placeholders
from kelpie.storage._sqlite_rows import SqliteRows
from kelpie.storage._vector_index import VectorIndex

_Row = TypeVar("_Row", Passage, Message)

# FTS table per kind (the index tables and their filter are shared: `_search_sql`).
_FTS: Final[dict[str, str]] = {"passage": "passage_fts", "message": "message_fts"}


def fts5_expression(words: Sequence[str], *, every_word: bool) -> str:
    """The FTS5 expression matching rows with every (or any) of the words, each quoted so
    no character of a word is FTS5 syntax."""
    assert words, "a keyword search needs a word"
    joiner = " AND " if every_word else " OR "
    return joiner.join('"' + word.replace('"', '""') + '"' for word in words)


class SearchRows(SqliteRows):
    _vector_index: VectorIndex

    @staticmethod
    def _index_messages(db: sqlite3.Connection, messages: Sequence[Message]) -> None:
        """Index rows and FTS rows for the searchable messages, in the caller's transaction.
        A message indexed before (the system message is rewritten in place) keeps its row."""
        for message in messages:
            text = message_search_text(message)
            if text is None:
                continue
            cursor = db.execute(
                "INSERT INTO message_index (message_id, agent_id, conversation_id, role,"
                " created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
                (
                    message.id,
                    message.agent_id,
                    message.conversation_id,
                    message.role,
                    us_from_datetime(message.created_at),
                ),
            )
            if cursor.rowcount == 1:
                db.execute(
                    "INSERT INTO message_fts (rowid, text) VALUES (?, ?)", (cursor.lastrowid, text)
                )

    async def keyword_search(
        self, search: SearchFilter, words: Sequence[str], *, every_word: bool, limit: int
    ) -> list[int]:
        """Keys of the rows holding every (or any) of the words, best bm25 first."""
        match = fts5_expression(words, every_word=every_word)
        index, fts = INDEX_TABLES[search.kind].name, _FTS[search.kind]
        where, params = filter_conditions(search)
        conditions = " AND ".join([f"{fts} MATCH ?", *where])
        rows = self._read(
            f"SELECT f.rowid FROM {fts} f JOIN {index} i ON i.seq = f.rowid"
            f" WHERE {conditions} ORDER BY bm25({fts}), f.rowid LIMIT ?",
            [match, *params, limit],
        )
        return [row[0] for row in rows]

    async def filtered_keys(self, search: SearchFilter) -> list[int]:
        """Keys of every row the filter lets through (used for the filters a vector cache
        cannot check itself: tags)."""
        index = INDEX_TABLES[search.kind].name
        where, params = filter_conditions(search)
        rows = self._read(f"SELECT i.seq FROM {index} i WHERE {' AND '.join(where) or '1'}", params)
        return [row[0] for row in rows]

    async def vector_search(
        self, search: SearchFilter, model: str, query: bytes, limit: int
    ) -> list[tuple[int, float]]:
        """(key, cosine) of the rows nearest the query vector, best first (exact search)."""
        return await self._vector_index.search(search, model, query, limit)

    async def vectors_since(
        self, kind: SearchKind, scope: str | None, model: str, after_vector_seq: int
    ) -> VectorRows:
        """The scope's vectors made by `model` and written after `after_vector_seq`; scope
        None means every row of the kind."""
        index, scope_column = INDEX_TABLES[kind].name, INDEX_TABLES[kind].scope
        role = "role" if kind == "message" else "''"
        where = ["vector_seq > ?", "model = ?"]
        params: list[object] = [after_vector_seq, model]
        if scope is not None:
            where.insert(0, f"{scope_column} = ?")
            params.insert(0, scope)
        rows = self._read(
            f"SELECT seq, created_at, {role}, vector FROM {index}"
            f" WHERE {' AND '.join(where)} ORDER BY seq",
            params,
        )
        return VectorRows(
            seqs=[row[0] for row in rows],
            created_at_us=[row[1] for row in rows],
            roles=[row[2] for row in rows],
            vectors=[row[3] for row in rows],
            last_vector_seq=await self.last_vector_seq(kind, scope),
        )

    async def last_vector_seq(self, kind: SearchKind, scope: str | None) -> int:
        """The newest vector write in the scope (0 if none): a cache newer than it is fresh."""
        index, scope_column = INDEX_TABLES[kind].name, INDEX_TABLES[kind].scope
        if scope is None:
            rows = self._read("SELECT value FROM search_counters WHERE name = ?", (kind,))
        else:
            rows = self._read(
                f"SELECT max(vector_seq) FROM {index} WHERE {scope_column} = ?", (scope,)
            )
        return int(rows[0][0] or 0) if rows else 0

    async def pending_embeddings(
        self, kind: SearchKind, scopes: Sequence[str], limit: int
    ) -> list[tuple[int, str]]:
        """(key, text) of rows still without a vector, oldest first; scopes empty = any."""
        table, fts = INDEX_TABLES[kind], _FTS[kind]
        index, scope_column = table.name, table.scope
        where = ["i.vector IS NULL"]
        if scopes:
            where.append(f"i.{scope_column} IN ({placeholders(scopes)})")
        # CROSS JOIN keeps the index table outside: walked in key order through its pending
        # index, the batch costs its own rows, whatever the backlog or the table's size.
        rows = self._read(
            f"SELECT i.seq, f.text FROM {index} i CROSS JOIN {fts} f ON f.rowid = i.seq"
            f" WHERE {' AND '.join(where)} ORDER BY i.seq LIMIT ?",
            [*scopes, limit],
        )
        return [(row[0], row[1]) for row in rows]

    async def stale_embeddings(
        self, kind: SearchKind, model: str, after_seq: int, limit: int
    ) -> list[tuple[int, str]]:
        """(key, text) of rows with no vector or one made by another model, in key order
        after `after_seq` (re-embedding walks the table with it)."""
        index, fts = INDEX_TABLES[kind].name, _FTS[kind]
        rows = self._read(
            f"SELECT i.seq, f.text FROM {index} i CROSS JOIN {fts} f ON f.rowid = i.seq"
            " WHERE i.seq > ? AND (i.vector IS NULL OR i.model IS NOT ?)"
            " ORDER BY i.seq LIMIT ?",
            (after_seq, model, limit),
        )
        return [(row[0], row[1]) for row in rows]

    async def count_embeddings(self, kind: SearchKind, model: str) -> tuple[int, int]:
        """(rows with a vector by `model`, all rows) of the kind."""
        index = INDEX_TABLES[kind].name
        rows = self._read(
            f"SELECT count(*) FILTER (WHERE model = ? AND vector IS NOT NULL), count(*)"
            f" FROM {index}",
            (model,),
        )
        return int(rows[0][0]), int(rows[0][1])

    async def count_pending_embeddings(self, kind: SearchKind, limit: int) -> int:
        """Rows still without a vector, up to `limit` (a walk of the pending index only)."""
        assert limit > 0, "a count up to nothing"
        index = INDEX_TABLES[kind].name
        rows = self._read(
            f"SELECT count(*) FROM (SELECT 1 FROM {index} WHERE vector IS NULL LIMIT ?)",
            (limit,),
        )
        return int(rows[0][0])

    async def save_embeddings(
        self, kind: SearchKind, model: str, dim: int, vectors: Sequence[tuple[int, bytes]]
    ) -> None:
        """Writes vectors by key (a key deleted meanwhile is skipped), each with the next
        vector sequence number, so caches see them as new."""
        index = INDEX_TABLES[kind].name
        if not vectors:
            return
        for _, blob in vectors:
            assert len(blob) == dim * 4, "vector bytes do not match its dimension"
        with self._tx() as db:
            (last,) = db.execute(
                "UPDATE search_counters SET value = value + ? WHERE name = ? RETURNING value",
                (len(vectors), kind),
            ).fetchone()
            first = last - len(vectors) + 1
            db.executemany(
                f"UPDATE {index} SET model = ?, dim = ?, vector = ?, vector_seq = ? WHERE seq = ?",
                [
                    (model, dim, blob, first + offset, seq)
                    for offset, (seq, blob) in enumerate(vectors)
                ],
            )

    async def passages_by_key(self, seqs: Sequence[int]) -> dict[int, Passage]:
        return self._rows_by_key("passage", seqs, Passage)

    async def messages_by_key(self, seqs: Sequence[int]) -> dict[int, Message]:
        return self._rows_by_key("message", seqs, Message)

    def _rows_by_key(
        self, kind: SearchKind, seqs: Sequence[int], model: type[_Row]
    ) -> dict[int, _Row]:
        """The rows behind index keys (`passage_index` / `message_index` seqs)."""
        table = "passages" if kind == "passage" else "messages"
        found: dict[int, _Row] = {}
        for chunk in _chunks(seqs):
            rows = self._read(
                f"SELECT i.seq, r.data FROM {kind}_index i JOIN {table} r ON r.id = i.{kind}_id"
                f" WHERE i.seq IN ({placeholders(chunk)})",
                chunk,
            )
            found.update((seq, model.model_validate_json(data)) for seq, data in rows)
        # Keys whose rows are gone (deleted, or cascaded) leave the vector index too.
        self._vector_index.forget(kind, [seq for seq in seqs if seq not in found])
        return found


def _chunks(values: Sequence[int]) -> list[list[int]]:
    return [
        list(values[start : start + SQL_VARIABLES_MAX])
        for start in range(0, len(values), SQL_VARIABLES_MAX)
    ]

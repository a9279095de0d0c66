"""SQLite rows for archives and their passages. A mixin of SqliteStore.

An agent's own archive is created with its first passage (its id is derived from the
agent's, so finding it needs no lookup); other archives are created through the API and
attached to any number of agents. Writing a passage indexes it for search in the same
transaction (triggers of migration 0003).
"""

import sqlite3
from collections.abc import Sequence

from kelpie.schemas import Archive, Passage, us_from_datetime
from kelpie.storage._queries import ArchiveQuery, Page
from kelpie.storage._row_shapes import ARCHIVE_COLUMNS, archive_from_row, own_archive
from kelpie.storage._sql import like_pattern, placeholders
from kelpie.storage._sqlite_rows import SqliteRows


class ArchiveRows(SqliteRows):
    # Passages ----------------------------------------------------------------------------

    async def insert_passages(self, passages: Sequence[Passage]) -> None:
        with self._tx() as db:
            for passage in passages:
                self._insert_passage(db, passage)

    @staticmethod
    def _insert_passage(db: sqlite3.Connection, passage: Passage) -> None:
        """An agent's passage goes to its own archive, created (and attached) on first use."""
        created = us_from_datetime(passage.created_at)
        if passage.agent_id is not None:
            own = own_archive(passage)
            db.execute(
                "INSERT OR IGNORE INTO archives (id, name, created_at, data) VALUES (?, ?, ?, ?)",
                (own.id, own.name, created, own.model_dump_json()),
            )
            db.execute(
                "INSERT OR IGNORE INTO agent_archives (agent_id, archive_id) VALUES (?, ?)",
                (passage.agent_id, passage.archive_id),
            )
        db.execute(
            "INSERT INTO passages (id, archive_id, created_at, text, data) VALUES (?, ?, ?, ?, ?)",
            (passage.id, passage.archive_id, created, passage.text, passage.model_dump_json()),
        )

    async def delete_passage(self, archive_ids: Sequence[str], passage_id: str) -> bool:
        """Deletes the passage if it is in one of `archive_ids`."""
        if not archive_ids:
            return False
        with self._tx() as db:
            return (
                db.execute(
                    f"DELETE FROM passages WHERE id = ? AND archive_id IN"
                    f" ({placeholders(archive_ids)})",
                    [passage_id, *archive_ids],
                ).rowcount
                == 1
            )

    async def list_passages(
        self, archive_ids: Sequence[str], page: Page, text: str | None
    ) -> list[Passage]:
        if not archive_ids:
            return []
        where = [f"p.archive_id IN ({placeholders(archive_ids)})"]
        params: list[object] = list(archive_ids)
        if text:
            where.append("p.text LIKE ? ESCAPE '\\'")
            params.append(like_pattern(text))
        sql, all_params, reverse = self._paged("passages", "p", page, where, params)
        rows = self._read(f"SELECT p.data FROM passages p {sql}", all_params)
        passages = [Passage.model_validate_json(row[0]) for row in rows]
        return passages[::-1] if reverse else passages

    async def count_passages(self, archive_id: str) -> int:
        rows = self._read("SELECT COUNT(*) FROM passages WHERE archive_id = ?", (archive_id,))
        return int(rows[0][0])

    # Archives ----------------------------------------------------------------------------

    async def insert_archive(self, archive: Archive) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO archives (id, name, created_at, data) VALUES (?, ?, ?, ?)",
                (
                    archive.id,
                    archive.name,
                    us_from_datetime(archive.created_at),
                    archive.model_dump_json(),
                ),
            )

    async def get_archive(self, archive_id: str) -> Archive | None:
        rows = self._read(f"SELECT {ARCHIVE_COLUMNS} FROM archives WHERE id = ?", (archive_id,))
        return archive_from_row(rows[0]) if rows else None

    async def update_archive(self, archive: Archive) -> None:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE archives SET name = ?, data = ? WHERE id = ?",
                (archive.name, archive.model_dump_json(), archive.id),
            )
            assert cursor.rowcount == 1, "update of an archive that is not stored"

    async def delete_archive(self, archive_id: str) -> bool:
        """Deletes the archive and, by cascade, its passages and attachments."""
        with self._tx() as db:
            return db.execute("DELETE FROM archives WHERE id = ?", (archive_id,)).rowcount == 1

    async def list_archives(self, query: ArchiveQuery, page: Page) -> list[Archive]:
        where: list[str] = []
        params: list[object] = []
        if query.name is not None:
            where.append("a.name = ?")
            params.append(query.name)
        if query.agent_id is not None:
            where.append("a.id IN (SELECT archive_id FROM agent_archives WHERE agent_id = ?)")
            params.append(query.agent_id)
        sql, all_params, reverse = self._paged("archives", "a", page, where, params)
        rows = self._read(f"SELECT {ARCHIVE_COLUMNS} FROM archives a {sql}", all_params)
        archives = [archive_from_row(row) for row in rows]
        return archives[::-1] if reverse else archives

    async def attach_archive(self, agent_id: str, archive_id: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO agent_archives (agent_id, archive_id) VALUES (?, ?)",
                (agent_id, archive_id),
            )

    async def detach_archive(self, agent_id: str, archive_id: str) -> bool:
        with self._tx() as db:
            return (
                db.execute(
                    "DELETE FROM agent_archives WHERE agent_id = ? AND archive_id = ?",
                    (agent_id, archive_id),
                ).rowcount
                == 1
            )

    async def archive_ids_of_agent(self, agent_id: str) -> list[str]:
        """Every archive the agent searches: its own (once it has one) and attached ones."""
        rows = self._read(
            "SELECT archive_id FROM agent_archives WHERE agent_id = ? ORDER BY archive_id",
            (agent_id,),
        )
        return [row[0] for row in rows]

"""PostgreSQL rows for archives and their passages: the `_roles.Archives` role, with the
semantics of the SQLite store's methods of the same names (`_sqlite_archives.py`; the
conformance suite, tests/storage/test_conformance_archives.py, runs the same assertions on
both).

As on SQLite, an agent's own archive is created (and attached) with its first passage, and
a passage is indexed for search in its own transaction: its `passage_index` row (the text,
from which PostgreSQL generates the tsvector; seq from the identity; vector NULL, meaning
"embedding still to do") and its `passage_tags` rows. SQLite writes those by trigger; here
the store writes them (migration 0003), and deletes follow by cascade.

Differences from SQLite that are not visible through the protocol:
- PostgreSQL text cannot hold NUL: the searchable copies (passages.text, the index text and
  tags, the text filter) drop it; each passage's JSON keeps the original.
- Writers run concurrently: the agent's own archive, created if absent, is then locked
  against deletion (FOR KEY SHARE) until the passages are committed, where SQLite's single
  writer ordered the create, the attach and the insert by itself.
"""

from collections.abc import Sequence
from typing import Final

from kelpie.schemas import Archive, Passage, us_from_datetime
from kelpie.storage._errors import StorageConflict
from kelpie.storage._pg_rows import Connection, PgRows
from kelpie.storage._queries import ArchiveQuery, Page
from kelpie.storage._row_shapes import ARCHIVE_COLUMNS, archive_from_row, own_archive
from kelpie.storage._sql import like_pattern

# Creating a missing own archive and locking it: a delete committed between the two makes
# the archive missing again, so the pair is tried once more before giving up.
_OWN_ARCHIVE_TRIES: Final = 2


def _nul_free(text: str) -> str:
    return text.replace("\x00", "")


async def _lock_own_archive(db: Connection, archive: Archive) -> None:
    """Creates the agent's own archive if it is missing, then holds it (FOR KEY SHARE, which
    other inserters share) so a concurrent delete_archive waits for this transaction
    instead of deleting the archive from under its passages."""
    for _ in range(_OWN_ARCHIVE_TRIES):
        await db.execute(
            "INSERT INTO archives (id, name, created_at, data) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (id) DO NOTHING",
            (
                archive.id,
                archive.name,
                us_from_datetime(archive.created_at),
                archive.model_dump_json(),
            ),
        )
        locked = await db.execute(
            "SELECT 1 FROM archives WHERE id = %s FOR KEY SHARE", (archive.id,)
        )
        if await locked.fetchone() is not None:
            return
    raise StorageConflict(f"Archive {archive.id} was deleted while passages were written to it")


class ArchiveRows(PgRows):
    # Passages ----------------------------------------------------------------------------

    async def insert_passages(self, passages: Sequence[Passage]) -> None:
        async with self._tx() as db:
            await self._insert_passage_rows(db, passages)

    async def _insert_passage(self, db: Connection, passage: Passage) -> None:
        """One passage in the caller's transaction (the step commit's)."""
        await self._insert_passage_rows(db, [passage])

    @staticmethod
    async def _insert_passage_rows(db: Connection, passages: Sequence[Passage]) -> None:
        """Passage rows with their index and tag rows, in the caller's transaction and in
        the given order (index keys follow it, as SQLite's). An agent's passage goes to its
        own archive, created (and attached) on first use from the batch's first passage."""
        if not passages:
            return
        owners: dict[str, Archive] = {}
        attached: set[tuple[str, str]] = set()
        for passage in passages:
            if passage.agent_id is not None:
                owners.setdefault(passage.archive_id, own_archive(passage))
                attached.add((passage.agent_id, passage.archive_id))
        # Locked and attached in key order, so two batches never wait for each other in a
        # cycle.
        for archive_id in sorted(owners):
            await _lock_own_archive(db, owners[archive_id])
        if attached:
            await db.cursor().executemany(
                "INSERT INTO agent_archives (agent_id, archive_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                sorted(attached),
            )
        rows = [
            (
                p.id,
                p.archive_id,
                us_from_datetime(p.created_at),
                _nul_free(p.text),
                p.model_dump_json(),
            )
            for p in passages
        ]
        await db.cursor().executemany(
            "INSERT INTO passages (id, archive_id, created_at, text, data)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows,
        )
        await db.cursor().executemany(
            "INSERT INTO passage_index (passage_id, archive_id, created_at, text)"
            " VALUES (%s, %s, %s, %s)",
            [row[:4] for row in rows],
        )
        tags = [(p.id, p.archive_id, _nul_free(tag)) for p in passages for tag in p.tags]
        if tags:
            await db.cursor().executemany(
                "INSERT INTO passage_tags (passage_id, archive_id, tag) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                tags,
            )

    async def delete_passage(self, archive_ids: Sequence[str], passage_id: str) -> bool:
        """Deletes the passage if it is in one of `archive_ids` (its index and tag rows
        follow by cascade)."""
        if not archive_ids:
            return False
        async with self._tx() as db:
            cursor = await db.execute(
                "DELETE FROM passages WHERE id = %s AND archive_id = ANY(%s)",
                (passage_id, list(archive_ids)),
            )
            return cursor.rowcount == 1

    async def list_passages(
        self, archive_ids: Sequence[str], page: Page, text: str | None
    ) -> list[Passage]:
        """A page of the archives' passages; `text` keeps those containing it (ASCII letters
        in either case, as SQLite's LIKE; PostgreSQL folds other letters too)."""
        if not archive_ids:
            return []
        where = ["p.archive_id = ANY(%s)"]
        params: list[object] = [list(archive_ids)]
        if text:
            where.append("p.text ILIKE %s ESCAPE '\\'")
            params.append(like_pattern(_nul_free(text)))
        async with self._reading() as db:
            tail, all_params, reverse = await self._paged(db, "passages", "p", page, where, params)
            cursor = await db.execute(f"SELECT p.data FROM passages p {tail}", all_params)
            rows = await cursor.fetchall()
        passages = [Passage.model_validate_json(row[0]) for row in rows]
        return passages[::-1] if reverse else passages

    async def count_passages(self, archive_id: str) -> int:
        rows = await self._read(
            "SELECT COUNT(*) FROM passages WHERE archive_id = %s", (archive_id,)
        )
        return int(rows[0][0])

    # Archives ----------------------------------------------------------------------------

    async def insert_archive(self, archive: Archive) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO archives (id, name, created_at, data) VALUES (%s, %s, %s, %s)",
                (
                    archive.id,
                    archive.name,
                    us_from_datetime(archive.created_at),
                    archive.model_dump_json(),
                ),
            )

    async def get_archive(self, archive_id: str) -> Archive | None:
        rows = await self._read(
            f"SELECT {ARCHIVE_COLUMNS} FROM archives WHERE id = %s", (archive_id,)
        )
        return archive_from_row(rows[0]) if rows else None

    async def update_archive(self, archive: Archive) -> None:
        async with self._tx() as db:
            cursor = await db.execute(
                "UPDATE archives SET name = %s, data = %s WHERE id = %s",
                (archive.name, archive.model_dump_json(), archive.id),
            )
            assert cursor.rowcount == 1, "update of an archive that is not stored"

    async def delete_archive(self, archive_id: str) -> bool:
        """Deletes the archive and, by cascade, its passages (with their index and tag
        rows) and attachments."""
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM archives WHERE id = %s", (archive_id,))
            return cursor.rowcount == 1

    async def list_archives(self, query: ArchiveQuery, page: Page) -> list[Archive]:
        where: list[str] = []
        params: list[object] = []
        if query.name is not None:
            where.append("a.name = %s")
            params.append(query.name)
        if query.agent_id is not None:
            where.append("a.id IN (SELECT archive_id FROM agent_archives WHERE agent_id = %s)")
            params.append(query.agent_id)
        async with self._reading() as db:
            tail, all_params, reverse = await self._paged(db, "archives", "a", page, where, params)
            cursor = await db.execute(
                f"SELECT {ARCHIVE_COLUMNS} FROM archives a {tail}", all_params
            )
            rows = await cursor.fetchall()
        archives = [archive_from_row(row) for row in rows]
        return archives[::-1] if reverse else archives

    async def attach_archive(self, agent_id: str, archive_id: str) -> None:
        """Attaching an attached archive is a no-op; an unknown agent or archive is a
        StorageConflict (a foreign key)."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO agent_archives (agent_id, archive_id) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING",
                (agent_id, archive_id),
            )

    async def detach_archive(self, agent_id: str, archive_id: str) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "DELETE FROM agent_archives WHERE agent_id = %s AND archive_id = %s",
                (agent_id, archive_id),
            )
            return cursor.rowcount == 1

    async def archive_ids_of_agent(self, agent_id: str) -> list[str]:
        """Every archive the agent searches: its own (once it has one) and attached ones,
        in id order."""
        rows = await self._read(
            "SELECT archive_id FROM agent_archives WHERE agent_id = %s ORDER BY archive_id",
            (agent_id,),
        )
        return [row[0] for row in rows]

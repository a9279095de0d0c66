"""SQLite rows for block history, a mixin of SqliteStore. Every change to an existing
block goes through `_change_block`, which writes the block and its history entry in the
caller's transaction: a block never changes without its entry, nor the reverse."""

import sqlite3
from typing import Final

from kelpie.errors import InvalidInput
from kelpie.schemas import (
    BLOCK_HISTORY_ENTRIES_MAX,
    BLOCK_HISTORY_SEQ_MAX,
    Block,
    BlockHistoryEntry,
    BlockVersion,
    block_version,
    us_from_datetime,
)
from kelpie.storage._commits import BlockChange
from kelpie.storage._pagination import key_page_clause
from kelpie.storage._queries import Page
from kelpie.storage._sqlite_rows import SqliteRows

# The tracked fields of a stored block, without parsing its whole JSON, and its last seq.
_VERSION_SQL: Final = (
    "SELECT json_extract(data, '$.value'), label, json_extract(data, '$.description'),"
    " json_extract(data, '$.limit'),"
    " (SELECT MAX(seq) FROM block_history WHERE block_id = blocks.id)"
    " FROM blocks WHERE id = ?"
)


def _seq(cursor: str) -> int:
    try:
        seq = int(cursor)
    except ValueError:
        seq = -1
    if not 0 <= seq <= BLOCK_HISTORY_SEQ_MAX:
        raise InvalidInput(f"Cursor '{cursor}' is not a history sequence number to page from")
    return seq


class HistoryRows(SqliteRows):
    def _change_block(self, db: sqlite3.Connection, block: Block, change: BlockChange) -> None:
        """Writes an existing block and, when a tracked field (value, label, description,
        limit) changed, appends its history entry and drops entries past the bound."""
        row = db.execute(_VERSION_SQL, (block.id,)).fetchone()
        assert row is not None, "change of a block that is not stored"
        old = BlockVersion(value=row[0], label=row[1], description=row[2], limit=row[3])
        self._write_block_row(db, block, insert=False)
        new = block_version(block)
        if new == old:
            return
        assert block.updated_at is not None, "block changed without updated_at"
        seq = (row[4] or 0) + 1
        entry = BlockHistoryEntry(
            block_id=block.id,
            seq=seq,
            created_at=block.updated_at,
            source=change.source,
            agent_id=change.agent_id,
            tool_call_id=change.tool_call_id,
            step_id=change.step_id,
            restored_seq=change.restored_seq,
            restored_side=change.restored_side,
            old=old,
            new=new,
        )
        db.execute(
            "INSERT INTO block_history (block_id, seq, created_at, data) VALUES (?, ?, ?, ?)",
            (block.id, seq, us_from_datetime(block.updated_at), entry.model_dump_json()),
        )
        if seq > BLOCK_HISTORY_ENTRIES_MAX:
            db.execute(
                "DELETE FROM block_history WHERE block_id = ? AND seq <= ?",
                (block.id, seq - BLOCK_HISTORY_ENTRIES_MAX),
            )

    async def list_block_history(self, block_id: str, page: Page) -> list[BlockHistoryEntry]:
        """A page of the block's history by seq; `after`/`before` are seq numbers."""
        after = None if page.after is None else _seq(page.after)
        before = None if page.before is None else _seq(page.before)
        clause = key_page_clause("seq", page, after=after, before=before)
        rows = self._read(
            f"SELECT data FROM block_history WHERE {' AND '.join(['block_id = ?', *clause.where])}"
            f" ORDER BY {clause.order} LIMIT ?",
            [block_id, *clause.params, page.limit],
        )
        entries = [BlockHistoryEntry.model_validate_json(row[0]) for row in rows]
        return entries[::-1] if clause.reverse else entries

    async def get_block_history_entry(self, block_id: str, seq: int) -> BlockHistoryEntry | None:
        rows = self._read(
            "SELECT data FROM block_history WHERE block_id = ? AND seq = ?", (block_id, seq)
        )
        return BlockHistoryEntry.model_validate_json(rows[0][0]) if rows else None

"""SQLite rows for API keys. A mixin of SqliteStore.

Keys are a handful of rows read whole by the server's key cache, so they are columns (no
JSON): the cache reloads them every few seconds.
"""

from kelpie.schemas import ApiKey, us_from_datetime
from kelpie.storage._row_shapes import API_KEY_COLUMNS, key_from_row, optional_us
from kelpie.storage._sqlite_rows import SqliteRows


class ApiKeyRows(SqliteRows):
    async def insert_api_key(self, key: ApiKey) -> None:
        with self._tx() as db:
            db.execute(
                f"INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.id,
                    key.name,
                    key.secret_hash,
                    int(key.admin),
                    key.rate_limit_per_minute,
                    us_from_datetime(key.created_at),
                    optional_us(key.expires_at),
                    optional_us(key.last_used_at),
                    optional_us(key.revoked_at),
                ),
            )

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        rows = self._read(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        return key_from_row(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = self._read(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [key_from_row(row) for row in rows]

    async def revoke_api_key(self, key_id: str, revoked_at_us: int) -> ApiKey | None:
        """Revokes the key (a key revoked before keeps its first revocation time); None if
        there is no such key."""
        with self._tx() as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (revoked_at_us, key_id),
            )
            rows = db.execute(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
            row = rows.fetchone()
        return None if row is None else key_from_row(row)

    async def touch_api_key(self, key_id: str, used_at_us: int) -> None:
        """Records a use; never moves last_used_at backwards."""
        with self._tx() as db:
            db.execute(
                "UPDATE api_keys SET last_used_at = ?"
                " WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                (used_at_us, key_id, used_at_us),
            )

"""PostgreSQL rows for API keys: the `_roles.ApiKeys` role, with the semantics of the
SQLite store's methods of the same names (`_sqlite_keys.py`).

Keys are a handful of rows read whole by the server's key cache, so they are columns (no
JSON). A revocation and a use are each one conditional UPDATE, so concurrent writers can
neither move an earlier revocation nor move last_used_at backwards.
"""

from kelpie.schemas import ApiKey, us_from_datetime
from kelpie.storage._pg_rows import PgRows
from kelpie.storage._row_shapes import API_KEY_COLUMNS, key_from_row, optional_us


class ApiKeyRows(PgRows):
    async def insert_api_key(self, key: ApiKey) -> None:
        async with self._tx() as db:
            await db.execute(
                f"INSERT INTO api_keys ({API_KEY_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    key.id,
                    key.name,
                    key.secret_hash,
                    key.admin,
                    key.rate_limit_per_minute,
                    us_from_datetime(key.created_at),
                    optional_us(key.expires_at),
                    optional_us(key.last_used_at),
                    optional_us(key.revoked_at),
                ),
            )

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        rows = await self._read(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
        return key_from_row(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKey]:
        rows = await self._read(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [key_from_row(row) for row in rows]

    async def revoke_api_key(self, key_id: str, revoked_at_us: int) -> ApiKey | None:
        """Revokes the key (a key revoked before keeps its first revocation time); None if
        there is no such key."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                (revoked_at_us, key_id),
            )
            cursor = await db.execute(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else key_from_row(row)

    async def touch_api_key(self, key_id: str, used_at_us: int) -> None:
        """Records a use; never moves last_used_at backwards."""
        async with self._tx() as db:
            await db.execute(
                "UPDATE api_keys SET last_used_at = %s"
                " WHERE id = %s AND (last_used_at IS NULL OR last_used_at < %s)",
                (used_at_us, key_id, used_at_us),
            )

"""Rows that the SQLite and PostgreSQL stores share column for column (API keys, working
memory), and how each becomes its model: one definition for both backends."""

import json
from typing import Any, Final

from kelpie.schemas import ApiKey, WorkingMemoryEntry, datetime_from_us, us_from_datetime

API_KEY_COLUMNS: Final = (
    "id, name, secret_hash, admin, rate_limit_per_minute, created_at, expires_at,"
    " last_used_at, revoked_at"
)
ENTRY_COLUMNS: Final = "key, value, expires_at, created_at, updated_at"
# Greater than every character a working-memory key may hold (keys are ASCII from a small
# set), so the keys starting with a prefix p are exactly those in [p, p + PREFIX_END) (under
# COLLATE "C" on PostgreSQL).
PREFIX_END: Final = "\x7f"


def optional_us(value: Any) -> Any:
    return None if value is None else us_from_datetime(value)


def key_from_row(row: Any) -> ApiKey:
    key_id, name, secret_hash, admin, limit, created, expires, used, revoked = row
    return ApiKey(
        id=key_id,
        name=name,
        secret_hash=secret_hash,
        admin=bool(admin),
        rate_limit_per_minute=limit,
        created_at=datetime_from_us(created),
        expires_at=None if expires is None else datetime_from_us(expires),
        last_used_at=None if used is None else datetime_from_us(used),
        revoked_at=None if revoked is None else datetime_from_us(revoked),
    )


def entry_from_row(row: Any) -> WorkingMemoryEntry:
    key, value, expires_at, created_at, updated_at = row
    return WorkingMemoryEntry(
        key=key,
        value=json.loads(value),
        expires_at=None if expires_at is None else datetime_from_us(expires_at),
        created_at=datetime_from_us(created_at),
        updated_at=datetime_from_us(updated_at),
    )

"""Checking a presented API key without a database round trip per request.

The server keeps every key record in memory, reloaded when it is older than
`KEYS_RELOAD_S` (so a key revoked by `kelpie keys` stops working within that time) and
updated at once by the admin route. A key the cache does not know is looked up by its id
(a key just made by the CLI works on its first request); such misses are failed attempts,
which the caller throttles per address.
"""

import dataclasses
import hmac
import logging
import math
from typing import Final, final

from kelpie.env import Clock
from kelpie.schemas import ApiKey, datetime_from_us, us_from_datetime
from kelpie.service._api_key_tokens import parse_key_text, secret_digest
from kelpie.storage import StorageConflict, StorageUnavailable, Store

KEYS_RELOAD_S: Final = 5.0
# last_used_at is written at most this often per key: a write per request would cost more
# than the request.
LAST_USED_WRITE_S: Final = 60.0
_US_PER_S: Final = 1_000_000

log = logging.getLogger(__name__)


@final
@dataclasses.dataclass(frozen=True)
class KeyCheck:
    """A presented key whose secret matched: `refused` says why it may not be used (revoked,
    expired), None when it may."""

    key: ApiKey
    refused: str | None


@final
class ApiKeyCache:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._keys: dict[str, ApiKey] | None = None
        self._loaded_at_s = -math.inf

    async def any_keys(self) -> bool:
        """Whether any key was ever made (revoked and expired ones count): key
        authentication is on from the first key, and never silently off again."""
        return bool(await self._loaded())

    def remember(self, key: ApiKey) -> None:
        """A key this process just created or revoked: seen at once, with no reload."""
        if self._keys is not None:
            self._keys[key.id] = key

    async def check(self, presented: bytes) -> KeyCheck | None:
        """The key `presented` names, if its secret matches (compared in constant time)."""
        parsed = parse_key_text(presented)
        if parsed is None:
            return None
        key_id, secret_part = parsed
        keys = await self._loaded()
        key = keys.get(key_id)
        if key is None:
            key = await self._store.get_api_key(key_id)  # made since the last load?
            if key is None:
                return None
            keys[key.id] = key
        if not hmac.compare_digest(secret_digest(secret_part), key.secret_hash):
            return None
        now_us = self._clock.now_us()
        if key.revoked_at is not None:
            return KeyCheck(key, f"API key '{key.name}' ({key.id}) was revoked")
        if key.expires_at is not None and us_from_datetime(key.expires_at) <= now_us:
            expired = key.expires_at.isoformat()
            return KeyCheck(key, f"API key '{key.name}' ({key.id}) expired at {expired}")
        await self._note_use(key, now_us)
        return KeyCheck(key, None)

    async def _loaded(self) -> dict[str, ApiKey]:
        """The key records, reloaded when stale. A failed reload keeps the old records for
        another interval; with none loaded yet, the failure is the caller's (a 503)."""
        now_s = self._clock.monotonic_s()
        if self._keys is not None and now_s - self._loaded_at_s < KEYS_RELOAD_S:
            return self._keys
        try:
            records = await self._store.list_api_keys()
        except StorageUnavailable:
            if self._keys is None:
                raise
            log.warning("reloading API keys failed; using the ones loaded before")
        else:
            self._keys = {key.id: key for key in records}
        self._loaded_at_s = now_s
        assert self._keys is not None
        return self._keys

    async def _note_use(self, key: ApiKey, now_us: int) -> None:
        used = key.last_used_at
        if used is not None and now_us - us_from_datetime(used) < LAST_USED_WRITE_S * _US_PER_S:
            return
        assert self._keys is not None, "a checked key was loaded"
        self._keys[key.id] = key.model_copy(update={"last_used_at": datetime_from_us(now_us)})
        try:
            await self._store.touch_api_key(key.id, now_us)
        except (StorageUnavailable, StorageConflict):
            # Bookkeeping only: the request it would fail was rightly authenticated.
            log.warning("recording the use of API key %s failed", key.id)

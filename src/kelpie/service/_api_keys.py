"""Managing API keys: create (the key is shown once), list, revoke. Used by the admin
route and by `kelpie keys`, which works on the database directly (the server's key cache
sees its changes within `KEYS_RELOAD_S`; a new key works at once)."""

import datetime as dt

from kelpie.env import Clock, Entropy
from kelpie.errors import InvalidInput, NotFound
from kelpie.schemas import (
    API_KEY_PREFIX,
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyInfo,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.service._api_key_cache import ApiKeyCache
from kelpie.service._api_key_tokens import SECRET_BYTES, key_text, parse_key_text, secret_digest
from kelpie.storage import Store


def _expiry(expires_at: dt.datetime | None, now_us: int) -> dt.datetime | None:
    if expires_at is None:
        return None
    try:
        expires_us = us_from_datetime(expires_at)
        stored = datetime_from_us(expires_us)
    except (OverflowError, ValueError) as error:
        raise InvalidInput(f"expires_at is out of range: {error}") from error
    if expires_us <= now_us:
        raise InvalidInput(f"expires_at {stored.isoformat()} is not in the future")
    return stored


class ApiKeyService:
    def __init__(
        self, store: Store, clock: Clock, entropy: Entropy, cache: ApiKeyCache | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._entropy = entropy
        self._cache = cache

    async def create(self, request: ApiKeyCreate) -> ApiKeyCreated:
        now_us = self._clock.now_us()
        key_id = self._entropy.new_id(API_KEY_PREFIX)
        text = key_text(key_id, self._entropy.secret_bytes(SECRET_BYTES))
        parsed = parse_key_text(text.encode())
        assert parsed is not None, "a new key has the shape of a key"
        assert parsed[0] == key_id, "a new key parses back to its id"
        key = ApiKey(
            id=key_id,
            name=request.name,
            admin=request.admin,
            rate_limit_per_minute=request.rate_limit_per_minute,
            created_at=datetime_from_us(now_us),
            expires_at=_expiry(request.expires_at, now_us),
            last_used_at=None,
            revoked_at=None,
            secret_hash=secret_digest(parsed[1]),
        )
        await self._store.insert_api_key(key)
        self._changed(key)
        return ApiKeyCreated(**key.info().model_dump(), key=text)

    async def list_keys(self) -> list[ApiKeyInfo]:
        return [key.info() for key in await self._store.list_api_keys()]

    async def revoke(self, key_id: str) -> ApiKeyInfo:
        """Revokes the key; revoking a revoked key changes nothing (and is no error)."""
        key = await self._store.revoke_api_key(key_id, self._clock.now_us())
        if key is None:
            raise NotFound(f"API key {key_id} not found")
        self._changed(key)
        return key.info()

    def _changed(self, key: ApiKey) -> None:
        if self._cache is not None:
            self._cache.remember(key)

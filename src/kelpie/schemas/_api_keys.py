"""API keys (a Kelpie extension): the stored record, and the admin route's request and
response shapes. The stored record carries the digest of the key's secret; nothing that is
sent to a client does."""

import datetime as dt
from typing import Final

from pydantic import Field

from kelpie.schemas._base import Identifier, RequestModel, ResponseModel

API_KEY_PREFIX: Final = "apikey"
API_KEY_NAME_CHARS_MAX: Final = 100
# Generous, but bounded: a token bucket of this many requests is a few bytes either way.
API_KEY_RATE_LIMIT_PER_MINUTE_MAX: Final = 1_000_000


class ApiKeyInfo(ResponseModel):
    """An API key as listed: everything but its secret."""

    id: str = Field(description="The key's id (`apikey-<uuid4>`); its hex digits are in the key.")
    name: str = Field(description="A label for the operator; need not be unique.")
    admin: bool = Field(description="Whether the key may manage API keys.")
    rate_limit_per_minute: int | None = Field(
        description="Requests a minute the key may make (429 beyond); null for no limit."
    )
    created_at: dt.datetime
    expires_at: dt.datetime | None = Field(description="When the key stops working; null: never.")
    last_used_at: dt.datetime | None = Field(
        description="When the key last authenticated a request (recorded at most once a minute)."
    )
    revoked_at: dt.datetime | None = Field(description="When the key was revoked; null if not.")


class ApiKey(ApiKeyInfo):
    """The stored record: the listed fields and the hex SHA-256 digest of the key's secret."""

    secret_hash: str

    def info(self) -> ApiKeyInfo:
        return ApiKeyInfo.model_validate(self.model_dump(exclude={"secret_hash"}))


class ApiKeyCreated(ApiKeyInfo):
    """The answer to creating a key: the only time the key itself is shown."""

    key: str = Field(description="The key, for `Authorization: Bearer <key>`. Not shown again.")


class ApiKeyCreate(RequestModel):
    name: Identifier = Field(min_length=1, max_length=API_KEY_NAME_CHARS_MAX)
    expires_at: dt.datetime | None = Field(
        default=None, description="When the key stops working (UTC if no offset); null: never."
    )
    rate_limit_per_minute: int | None = Field(
        default=None, ge=1, le=API_KEY_RATE_LIMIT_PER_MINUTE_MAX
    )
    admin: bool = Field(default=False, description="Whether the key may manage API keys.")

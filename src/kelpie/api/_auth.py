"""Who a request is: the one place credentials are checked (`GuardMiddleware` asks).

Auth is on when the server has a password (Letta's password mode) or once any API key has
been made (revoking or expiring every key does not open the server again). Then every
route but health asks for `Authorization: Bearer <secret>` or `X-BARE-PASSWORD: password
<secret>`, where the secret is the password or a key. Wrong secrets, and revoked or expired
keys, count against the sender's address (`AuthThrottle`); a key over its own rate limit is
answered 429 without counting.
"""

import dataclasses
import hmac
from typing import Final, final

from kelpie.api._key_rates import KeyRates
from kelpie.api._limits import AuthThrottle
from kelpie.env import Clock
from kelpie.schemas import ApiKey
from kelpie.service import ApiKeyCache
from kelpie.storage import StorageUnavailable

# Where the middleware leaves the request's `Credential` in the ASGI scope.
CREDENTIAL_SCOPE_KEY: Final = "kelpie.credential"
UNAUTHORIZED: Final = "Unauthorized"
_RETRY_AFTER: Final = b"retry-after"


@final
@dataclasses.dataclass(frozen=True)
class Credential:
    """What a request authenticated with: the server password (`key` None) or an API key."""

    key: ApiKey | None

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.admin


@final
@dataclasses.dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


def offered_secrets(headers: dict[bytes, bytes]) -> list[bytes]:
    """The secrets a request offers, as Letta's clients send them: `Authorization: Bearer
    <secret>` or `X-BARE-PASSWORD: password <secret>`. A header without its scheme offers
    nothing that can match (but still counts as an attempt)."""
    offered = []
    bearer = headers.get(b"authorization", b"")
    if bearer[:7].lower() == b"bearer ":
        offered.append(bearer[7:])
    bare = headers.get(b"x-bare-password", b"")
    if bare.startswith(b"password "):
        offered.append(bare[9:])
    return offered


def _attempted(headers: dict[bytes, bytes]) -> bool:
    return bool(headers.get(b"authorization") or headers.get(b"x-bare-password"))


def _retry(status: int, detail: str, wait_s: int) -> Refusal:
    return Refusal(status, detail, ((_RETRY_AFTER, str(wait_s).encode()),))


@final
class Authenticator:
    def __init__(
        self,
        *,
        password: str | None,
        keys: ApiKeyCache | None,
        clock: Clock,
        failures_max: int,
        failure_window_s: float,
    ) -> None:
        self._password = None if password is None else password.encode()
        self._keys = keys
        self._throttle = AuthThrottle(clock, failures_max=failures_max, window_s=failure_window_s)
        self._rates = KeyRates(clock)

    async def admit(self, address: str, headers: dict[bytes, bytes]) -> Credential | Refusal | None:
        """The request's credential, or why it is refused; None on an open server."""
        try:
            keys_on = self._keys is not None and await self._keys.any_keys()
        except StorageUnavailable as error:
            return _retry(503, f"Cannot check credentials: {error.detail}", 1)
        if self._password is None and not keys_on:
            return None
        if (wait_s := self._throttle.retry_after_s(address)) is not None:
            detail = f"Too many failed authentication attempts; retry in {wait_s} s"
            return _retry(429, detail, wait_s)
        offered = offered_secrets(headers)
        if self._password is not None:
            # Every offered form is compared, in constant time, whichever matches.
            if any([hmac.compare_digest(secret, self._password) for secret in offered]):
                return Credential(key=None)
        for secret in offered:
            answer = await self._key_answer(address, secret)
            if answer is not None:
                return answer
        if _attempted(headers):
            self._throttle.failed(address)
        return Refusal(401, UNAUTHORIZED)

    async def _key_answer(self, address: str, secret: bytes) -> Credential | Refusal | None:
        """What the API key `secret` earns; None if it is no key's."""
        if self._keys is None:
            return None
        try:
            found = await self._keys.check(secret)
        except StorageUnavailable as error:
            return _retry(503, f"Cannot check credentials: {error.detail}", 1)
        if found is None:
            return None
        key = found.key
        if found.refused is not None:
            self._throttle.failed(address)
            return Refusal(401, found.refused)
        limit = key.rate_limit_per_minute
        if limit is not None and (wait_s := self._rates.retry_after_s(key.id, limit)) is not None:
            detail = (
                f"Rate limit exceeded: API key '{key.name}' may make {limit} requests a"
                f" minute; retry in {wait_s} s"
            )
            return _retry(429, detail, wait_s)
        return Credential(key=key)

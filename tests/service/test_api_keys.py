"""API keys in process: the service, the server's key cache (how often it reads the
database, how soon it sees a change made elsewhere), the per-key rate limit and the
authenticator that combines them with the password and the failure throttle."""

import asyncio
import collections
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from kelpie.api._auth import Authenticator, Credential, Refusal
from kelpie.api._key_rates import KeyRates
from kelpie.env import Entropy, system_entropy
from kelpie.errors import InvalidInput, NotFound
from kelpie.schemas import ApiKeyCreate, datetime_from_us
from kelpie.service import KEYS_RELOAD_S, ApiKeyCache, ApiKeyService
from kelpie.service._api_key_cache import LAST_USED_WRITE_S
from kelpie.service._api_key_tokens import parse_key_text
from kelpie.storage import SqliteStore, StorageUnavailable, Store

START_US = 1_700_000_000 * 1_000_000


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def now_us(self) -> int:
        return START_US + int(self.now * 1_000_000)

    def monotonic_s(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class CountingStore:
    """The store, counting the calls made through it (and failing them on demand)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: collections.Counter[str] = collections.Counter()
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self.failing:
                raise StorageUnavailable(f"injected failure of {name}")
            return await method(*args, **kwargs)

        return call


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore.open(tmp_path / "keys.db")
    yield opened
    asyncio.run(opened.close())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _create(service: ApiKeyService, name: str = "ci", **fields: Any) -> tuple[str, str]:
    created = asyncio.run(service.create(ApiKeyCreate(name=name, **fields)))
    return created.id, created.key


class TestService:
    def test_the_key_is_shown_once_and_stored_only_as_a_digest(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        service = ApiKeyService(store, clock, Entropy(1))
        key_id, text = _create(service)

        stored = asyncio.run(store.get_api_key(key_id))
        listed = asyncio.run(service.list_keys())

        assert stored is not None
        assert text not in stored.model_dump_json()
        parsed = parse_key_text(text.encode())
        assert parsed is not None
        assert parsed[0] == key_id
        assert parsed[1].decode() not in stored.model_dump_json()
        assert [key.id for key in listed] == [key_id]
        assert "secret_hash" not in listed[0].model_dump()

    def test_keys_differ_and_ids_are_letta_style(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        service = ApiKeyService(store, clock, Entropy(2))
        made = [_create(service, f"k{index}") for index in range(5)]

        assert len({text for _, text in made}) == 5
        assert all(key_id.startswith("apikey-") for key_id, _ in made)

    def test_revoking_keeps_the_first_time_and_unknown_is_not_found(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        service = ApiKeyService(store, clock, Entropy(3))
        key_id, _ = _create(service)

        first = asyncio.run(service.revoke(key_id))
        clock.now += 10
        second = asyncio.run(service.revoke(key_id))

        assert first.revoked_at == second.revoked_at == datetime_from_us(START_US)
        with pytest.raises(NotFound):
            asyncio.run(service.revoke("apikey-00000000-0000-4000-8000-000000000000"))

    @pytest.mark.parametrize(
        "expires_at",
        [
            datetime_from_us(START_US),
            dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        ],
        ids=["now", "beyond-year-9999"],
    )
    def test_an_expiry_not_in_the_future_or_out_of_range_is_refused(
        self, store: SqliteStore, clock: ManualClock, expires_at: dt.datetime
    ) -> None:
        service = ApiKeyService(store, clock, Entropy(4))

        with pytest.raises(InvalidInput, match="expires_at"):
            _create(service, expires_at=expires_at)
        assert asyncio.run(store.list_api_keys()) == []


class TestCache:
    def test_checking_keys_reads_the_database_once_per_reload_interval(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        _, text = _create(ApiKeyService(store, clock, Entropy(5)))
        counting = CountingStore(store)
        cache = ApiKeyCache(cast(Store, counting), clock)

        for _ in range(100):
            found = asyncio.run(cache.check(text.encode()))
            assert found is not None
            assert found.refused is None
            clock.now += 0.01

        assert counting.calls["list_api_keys"] == 1
        assert counting.calls["get_api_key"] == 0
        assert counting.calls["touch_api_key"] == 1  # last_used_at, once a minute at most

    def test_a_key_made_elsewhere_works_at_once_by_its_id(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        cache = ApiKeyCache(store, clock)
        assert not asyncio.run(cache.any_keys())

        _, text = _create(ApiKeyService(store, clock, Entropy(6)))  # the CLI: no cache
        found = asyncio.run(cache.check(text.encode()))

        assert found is not None
        assert found.refused is None
        assert asyncio.run(cache.any_keys())

    def test_a_revocation_made_elsewhere_is_seen_within_the_reload_interval(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        cli = ApiKeyService(store, clock, Entropy(7))
        key_id, text = _create(cli)
        cache = ApiKeyCache(store, clock)
        assert asyncio.run(cache.check(text.encode())) is not None

        asyncio.run(cli.revoke(key_id))
        clock.now += KEYS_RELOAD_S
        found = asyncio.run(cache.check(text.encode()))

        assert found is not None
        assert found.refused is not None
        assert "revoked" in found.refused

    def test_the_servers_own_changes_are_seen_at_once(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        cache = ApiKeyCache(store, clock)
        server = ApiKeyService(store, clock, Entropy(8), cache=cache)
        assert not asyncio.run(cache.any_keys())

        key_id, text = _create(server)
        assert asyncio.run(cache.any_keys())
        asyncio.run(server.revoke(key_id))
        found = asyncio.run(cache.check(text.encode()))

        assert found is not None
        assert found.refused == f"API key 'ci' ({key_id}) was revoked"

    def test_an_expired_key_is_refused_naming_when(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        expires_at = datetime_from_us(START_US + 60_000_000)
        key_id, text = _create(
            ApiKeyService(store, clock, Entropy(9)), "old", expires_at=expires_at
        )
        cache = ApiKeyCache(store, clock)
        before = asyncio.run(cache.check(text.encode()))
        clock.now += 60
        after = asyncio.run(cache.check(text.encode()))

        assert before is not None
        assert before.refused is None
        assert after is not None
        assert after.refused == f"API key 'old' ({key_id}) expired at {expires_at.isoformat()}"

    @pytest.mark.parametrize(
        "presented",
        [b"", b"kelpie_", b"Bearer x", b"kelpie_" + b"0" * 32 + b"_" + b"A" * 43],
        ids=["empty", "prefix", "not-a-key", "unknown-id"],
    )
    def test_anything_else_is_no_key(
        self, store: SqliteStore, clock: ManualClock, presented: bytes
    ) -> None:
        _create(ApiKeyService(store, clock, Entropy(10)))

        assert asyncio.run(ApiKeyCache(store, clock).check(presented)) is None

    def test_a_wrong_secret_for_a_real_id_is_no_key(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        _, text = _create(ApiKeyService(store, clock, Entropy(11)))
        last = "A" if text[-1] != "A" else "B"

        assert asyncio.run(ApiKeyCache(store, clock).check((text[:-1] + last).encode())) is None

    def test_last_used_is_written_at_most_once_a_minute(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        key_id, text = _create(ApiKeyService(store, clock, Entropy(12)))
        counting = CountingStore(store)
        cache = ApiKeyCache(cast(Store, counting), clock)

        for _ in range(3):
            asyncio.run(cache.check(text.encode()))
            clock.now += LAST_USED_WRITE_S / 2

        stored = asyncio.run(store.get_api_key(key_id))
        assert counting.calls["touch_api_key"] == 2
        assert stored is not None
        assert stored.last_used_at == datetime_from_us(START_US + int(LAST_USED_WRITE_S * 1e6))

    def test_a_failed_reload_keeps_the_keys_loaded_before(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        _create(ApiKeyService(store, clock, Entropy(13)))
        counting = CountingStore(store)
        cache = ApiKeyCache(cast(Store, counting), clock)
        assert asyncio.run(cache.any_keys())

        counting.failing = True
        clock.now += KEYS_RELOAD_S
        assert asyncio.run(cache.any_keys())
        with pytest.raises(StorageUnavailable):
            asyncio.run(ApiKeyCache(cast(Store, counting), clock).any_keys())


class TestKeyRates:
    def test_a_minutes_allowance_then_429_with_the_wait_until_the_next(self) -> None:
        clock = ManualClock()
        rates = KeyRates(clock)

        allowed = [rates.retry_after_s("k", 3) for _ in range(3)]
        refused = rates.retry_after_s("k", 3)
        clock.now += 20
        refilled = rates.retry_after_s("k", 3)

        assert allowed == [None, None, None]
        assert refused == 20
        assert refilled is None
        assert rates.retry_after_s("other", 3) is None


class TestAuthenticator:
    def _authenticator(
        self, store: Store, clock: ManualClock, password: str | None = None
    ) -> Authenticator:
        return Authenticator(
            password=password,
            keys=ApiKeyCache(store, clock),
            clock=clock,
            failures_max=2,
            failure_window_s=60,
        )

    def test_an_open_server_admits_everyone_until_a_key_exists(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        auth = self._authenticator(store, clock)
        assert asyncio.run(auth.admit("a", {})) is None

        key_id, _ = _create(ApiKeyService(store, clock, Entropy(14)))
        asyncio.run(ApiKeyService(store, clock, Entropy(14)).revoke(key_id))
        clock.now += KEYS_RELOAD_S

        assert asyncio.run(auth.admit("a", {})) == Refusal(401, "Unauthorized")

    def test_the_password_and_keys_both_admit(self, store: SqliteStore, clock: ManualClock) -> None:
        _, text = _create(ApiKeyService(store, clock, Entropy(15)), admin=False)
        auth = self._authenticator(store, clock, password="pw")

        by_password = asyncio.run(auth.admit("a", {b"authorization": b"Bearer pw"}))
        by_key = asyncio.run(auth.admit("a", {b"x-bare-password": b"password " + text.encode()}))

        assert by_password == Credential(key=None)
        assert isinstance(by_password, Credential)
        assert by_password.admin
        assert isinstance(by_key, Credential)
        assert by_key.key is not None
        assert not by_key.admin

    def test_wrong_keys_are_throttled_and_then_even_the_right_one_waits(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        _, text = _create(ApiKeyService(store, clock, Entropy(16)))
        auth = self._authenticator(store, clock)
        wrong = {b"authorization": b"Bearer kelpie_" + b"0" * 32 + b"_" + b"A" * 43}
        right = {b"authorization": b"Bearer " + text.encode()}

        answers = [asyncio.run(auth.admit("a", wrong)) for _ in range(2)]
        throttled = asyncio.run(auth.admit("a", right))

        assert answers == [Refusal(401, "Unauthorized")] * 2
        assert isinstance(throttled, Refusal)
        assert throttled.status == 429
        assert isinstance(asyncio.run(auth.admit("b", right)), Credential)

    def test_a_key_over_its_rate_limit_is_429_with_retry_after(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        _, text = _create(ApiKeyService(store, clock, Entropy(17)), rate_limit_per_minute=1)
        auth = self._authenticator(store, clock)
        headers = {b"authorization": b"Bearer " + text.encode()}

        first = asyncio.run(auth.admit("a", headers))
        second = asyncio.run(auth.admit("a", headers))

        assert isinstance(first, Credential)
        assert second == Refusal(
            429,
            "Rate limit exceeded: API key 'ci' may make 1 requests a minute; retry in 60 s",
            ((b"retry-after", b"60"),),
        )

    def test_no_keys_loaded_and_storage_down_is_503(
        self, store: SqliteStore, clock: ManualClock
    ) -> None:
        counting = CountingStore(store)
        counting.failing = True
        auth = self._authenticator(cast(Store, counting), clock)

        refused = asyncio.run(auth.admit("a", {}))

        assert isinstance(refused, Refusal)
        assert refused.status == 503
        assert refused.detail.startswith("Cannot check credentials")


class TestSecrets:
    def test_production_secrets_come_from_the_os_not_the_seeded_stream(self) -> None:
        same_seed = [Entropy(42, secrets_from_os=True).fork("api-keys") for _ in range(2)]

        assert same_seed[0].secret_bytes(32) != same_seed[1].secret_bytes(32)
        assert system_entropy().fork("api-keys").secret_bytes(32) != bytes(32)

    def test_simulated_secrets_replay_from_the_seed(self) -> None:
        runs = [Entropy(42).fork("api-keys").secret_bytes(32) for _ in range(2)]

        assert runs[0] == runs[1]

"""The API-keys role of the Store, the same assertions on every backend (SQLite and
PostgreSQL): round trips and not-found, a taken id, list order, a revocation that keeps its
first time, and uses that never move last_used_at backwards."""

import datetime as dt

import pytest

from kelpie.env import Entropy
from kelpie.schemas import API_KEY_PREFIX, ApiKey, us_from_datetime
from kelpie.storage import StorageConflict, StorageUnavailable

from ._backends import Backend, Conformance
from ._support import T0, at


def _key(entropy: Entropy, name: str, *, created_at: dt.datetime = T0) -> ApiKey:
    return ApiKey(
        id=entropy.new_id(API_KEY_PREFIX),
        name=name,
        secret_hash=f"{len(name):064x}",
        admin=False,
        rate_limit_per_minute=None,
        created_at=created_at,
        expires_at=None,
        last_used_at=None,
        revoked_at=None,
    )


def _us(seconds: int) -> int:
    return us_from_datetime(at(seconds))


def test_insert_round_trips_every_field(backend: Backend, entropy: Entropy) -> None:
    plain = _key(entropy, "ci")
    full = _key(entropy, "ops").model_copy(
        update={
            "admin": True,
            "rate_limit_per_minute": 120,
            "expires_at": at(3600),
            "last_used_at": at(5),
            "revoked_at": at(7),
        }
    )

    async def scenario(store: Conformance) -> None:
        for key in (plain, full):
            await store.insert_api_key(key)
            assert await store.get_api_key(key.id) == key
        assert await store.get_api_key(entropy.new_id(API_KEY_PREFIX)) is None

    backend.run(scenario)


def test_a_taken_id_is_a_conflict(backend: Backend, entropy: Entropy) -> None:
    key = _key(entropy, "ci")

    async def scenario(store: Conformance) -> None:
        await store.insert_api_key(key)
        with pytest.raises(StorageConflict):
            await store.insert_api_key(key.model_copy(update={"name": "again"}))
        assert await store.list_api_keys() == [key]

    backend.run(scenario)


def test_list_orders_by_created_at_then_id(backend: Backend, entropy: Entropy) -> None:
    late = _key(entropy, "late", created_at=at(9))
    same = sorted((_key(entropy, f"k{i}", created_at=at(2)) for i in range(4)), key=lambda k: k.id)

    async def scenario(store: Conformance) -> None:
        assert await store.list_api_keys() == []
        for key in [late, *reversed(same)]:
            await store.insert_api_key(key)
        assert await store.list_api_keys() == [*same, late]

    backend.run(scenario)


def test_revoking_twice_keeps_the_first_time(backend: Backend, entropy: Entropy) -> None:
    key = _key(entropy, "ci")

    async def scenario(store: Conformance) -> None:
        await store.insert_api_key(key)
        first = await store.revoke_api_key(key.id, _us(10))
        assert first == key.model_copy(update={"revoked_at": at(10)})
        assert await store.revoke_api_key(key.id, _us(20)) == first
        assert await store.revoke_api_key(key.id, _us(5)) == first
        assert await store.get_api_key(key.id) == first
        assert await store.revoke_api_key(entropy.new_id(API_KEY_PREFIX), _us(10)) is None
        # A revoked key keeps its row: still listed.
        assert await store.list_api_keys() == [first]

    backend.run(scenario)


def test_touch_never_moves_last_used_backwards(backend: Backend, entropy: Entropy) -> None:
    key = _key(entropy, "ci")

    async def scenario(store: Conformance) -> None:
        await store.insert_api_key(key)
        for seconds, expected in ((10, 10), (5, 10), (10, 10), (30, 30)):
            await store.touch_api_key(key.id, _us(seconds))
            stored = await store.get_api_key(key.id)
            assert stored is not None
            assert stored.last_used_at == at(expected)
            assert stored.model_copy(update={"last_used_at": None}) == key
        await store.touch_api_key(entropy.new_id(API_KEY_PREFIX), _us(40))  # unknown: no-op
        assert await store.list_api_keys() == [key.model_copy(update={"last_used_at": at(30)})]

    backend.run(scenario)


def test_a_closed_store_is_storage_unavailable(backend: Backend, entropy: Entropy) -> None:
    async def scenario(store: Conformance) -> None:
        await store.close()
        with pytest.raises(StorageUnavailable):
            await store.list_api_keys()
        with pytest.raises(StorageUnavailable):
            await store.touch_api_key(entropy.new_id(API_KEY_PREFIX), _us(1))

    backend.run(scenario)

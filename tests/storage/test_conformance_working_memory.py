"""The working-memory role of the Store, the same assertions on every backend (SQLite and
PostgreSQL): round trips of any JSON value, replacing a key, expiry judged by the caller's
`now_us`, key-order paging with a prefix, the key limit (live keys only), deletes of live
keys only, and unknown agents."""

import asyncio
import dataclasses
from typing import Final

import pytest
from pydantic import JsonValue

from kelpie.env import Entropy
from kelpie.errors import NotFound
from kelpie.schemas import (
    AGENT_PREFIX,
    WORKING_MEMORY_KEYS_MAX,
    AgentConfig,
    WorkingMemoryEntry,
    us_from_datetime,
    working_memory_entry,
)
from kelpie.storage import Page, StorageUnavailable, WorkingMemoryFull

from ._backends import Backend, Conformance
from ._support import T0, agent_config

NOW_US: Final = us_from_datetime(T0)
SECOND_US: Final = 1_000_000
ALL: Final = Page(limit=100, ascending=True)
RACERS: Final = 4
RACE_WARMUPS: Final = 5


@dataclasses.dataclass(frozen=True)
class Memory:
    """One agent's working memory in a store, at NOW_US unless told."""

    store: Conformance
    agent_id: str

    async def set(
        self, key: str, value: JsonValue, *, ttl_s: int | None = None, now_us: int = NOW_US
    ) -> WorkingMemoryEntry:
        entry = working_memory_entry(key, value, ttl_s=ttl_s, now_us=now_us)
        return await self.store.set_working_memory(self.agent_id, entry)

    async def keys(self, prefix: str = "", page: Page = ALL, now_us: int = NOW_US) -> list[str]:
        entries = await self.store.list_working_memory(self.agent_id, prefix, page, now_us)
        return [entry.key for entry in entries]


async def _memory(store: Conformance, agent: AgentConfig) -> Memory:
    await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=())
    return Memory(store, agent.id)


def test_set_then_get_round_trips_any_json_value(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    values: list[JsonValue] = [{"a": [1, 2.5, None]}, ["x"], "text", 7, True, "ünï ☃ \u0000"]

    async def write(store: Conformance) -> None:
        memory = await _memory(store, agent)
        for index, value in enumerate(values):
            entry = working_memory_entry(f"k{index}", value, ttl_s=None, now_us=NOW_US)
            assert await memory.set(f"k{index}", value) == entry
            assert await store.get_working_memory(agent.id, entry.key, NOW_US) == entry

    async def read(store: Conformance) -> None:
        for index, value in enumerate(values):
            found = await store.get_working_memory(agent.id, f"k{index}", NOW_US)
            assert found is not None
            assert found.value == value
        assert await store.get_working_memory(agent.id, "missing", NOW_US) is None

    backend.run(write)
    backend.run(read)


def test_setting_a_key_again_replaces_value_and_ttl_and_keeps_created_at(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        memory = await _memory(store, agent)
        first = await memory.set("k", 1, ttl_s=60)
        later = NOW_US + 5 * SECOND_US
        second = await memory.set("k", 2, now_us=later)
        assert second.created_at == first.created_at
        assert second.updated_at > first.updated_at
        stored = await store.get_working_memory(agent.id, "k", later)
        assert stored == second
        assert stored is not None
        assert (stored.value, stored.expires_at) == (2, None)

    backend.run(scenario)


def test_an_expired_key_is_new_again_when_set(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        memory = await _memory(store, agent)
        await memory.set("k", 1, ttl_s=1)
        later = NOW_US + 2 * SECOND_US
        again = await memory.set("k", 2, now_us=later)
        assert us_from_datetime(again.created_at) == later

    backend.run(scenario)


def test_a_key_is_invisible_from_its_expiry_on(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        memory = await _memory(store, agent)
        entry = await memory.set("k", "v", ttl_s=10)
        assert entry.expires_at is not None
        expiry_us = us_from_datetime(entry.expires_at)
        assert expiry_us == NOW_US + 10 * SECOND_US
        for now_us, visible in ((expiry_us - 1, True), (expiry_us, False)):
            found = await store.get_working_memory(agent.id, "k", now_us)
            listed = await memory.keys(now_us=now_us)
            keys = await store.working_memory_keys(agent.id, "", now_us)
            assert (found is not None, listed, keys) == (visible, ["k"] * visible, ["k"] * visible)
        # A read does not purge: the key is visible again to an earlier clock.
        assert await store.get_working_memory(agent.id, "k", NOW_US) == entry

    backend.run(scenario)


def test_list_is_in_key_order_and_a_prefix_is_a_key_range(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        memory = await _memory(store, agent)
        for key in ("b", "a:2", "a", "a:1", "a-b", "ab", "c", "B", "_x"):
            await memory.set(key, key)
        assert await memory.keys() == ["B", "_x", "a", "a-b", "a:1", "a:2", "ab", "b", "c"]
        assert await memory.keys("a:") == ["a:1", "a:2"]
        assert await memory.keys("a") == ["a", "a-b", "a:1", "a:2", "ab"]
        assert await memory.keys("zz") == []
        assert await store.working_memory_keys(agent.id, "a:", NOW_US) == ["a:1", "a:2"]
        assert await store.working_memory_keys(agent.id, "", NOW_US) == await memory.keys()

    backend.run(scenario)


def test_list_pages_by_key_both_ways(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    keys = [f"k{index:02d}" for index in range(7)]

    async def scenario(store: Conformance) -> None:
        memory = await _memory(store, agent)
        for key in keys:
            await memory.set(key, 0)
        pages: list[list[str]] = []
        after: str | None = None
        while page := await memory.keys(page=Page(limit=3, ascending=True, after=after)):
            pages.append(page)
            after = page[-1]
        assert pages == [keys[0:3], keys[3:6], keys[6:]]
        assert await memory.keys(page=Page(limit=2, after="k03")) == ["k02", "k01"]
        assert await memory.keys(page=Page(limit=2, ascending=True, before="k03")) == [
            "k01",
            "k02",
        ]
        assert await memory.keys(page=Page(limit=2, before="k03")) == ["k05", "k04"]
        # A cursor need not be a stored key: it is a position in key order.
        assert await memory.keys(page=Page(limit=2, ascending=True, after="k035")) == [
            "k04",
            "k05",
        ]
        assert await memory.keys(
            "k0", Page(limit=10, ascending=True, after="k01", before="k04")
        ) == [
            "k02",
            "k03",
        ]

    backend.run(scenario)


def test_agents_do_not_share_keys(backend: Backend, entropy: Entropy) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")

    async def scenario(store: Conformance) -> None:
        first, second = await _memory(store, ada), await _memory(store, bob)
        await first.set("k", "ada's")
        assert await second.keys() == []
        assert await store.get_working_memory(bob.id, "k", NOW_US) is None
        assert await store.delete_working_memory(bob.id, "k", NOW_US) is False
        assert await first.keys() == ["k"]

    backend.run(scenario)


def test_unknown_agents(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    unknown = entropy.new_id(AGENT_PREFIX)

    async def scenario(store: Conformance) -> None:
        with pytest.raises(NotFound):
            await Memory(store, unknown).set("k", 1)
        assert await store.get_working_memory(unknown, "k", NOW_US) is None
        assert await store.working_memory_keys(unknown, "", NOW_US) == []
        assert await store.delete_working_memory(unknown, "k", NOW_US) is False
        # Deleting an agent deletes its working memory.
        memory = await _memory(store, agent)
        await memory.set("k", 1)
        assert await store.delete_agent(agent.id) is True
        assert await store.get_working_memory(agent.id, "k", NOW_US) is None
        with pytest.raises(NotFound):
            await memory.set("k", 1)

    backend.run(scenario)


def test_key_limit_counts_live_keys_only(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        memory = await _memory(store, agent)
        for index in range(WORKING_MEMORY_KEYS_MAX - 1):
            await memory.set(f"k{index}", 0)
        await memory.set("short", 0, ttl_s=1)
        with pytest.raises(WorkingMemoryFull, match=str(WORKING_MEMORY_KEYS_MAX)):
            await memory.set("one-more", 0)
        assert await store.get_working_memory(agent.id, "one-more", NOW_US) is None
        # Replacing a key is no new key; once `short` expires there is room again.
        await memory.set("k0", 1)
        later = NOW_US + 2 * SECOND_US
        assert (await memory.set("one-more", 0, now_us=later)).key == "one-more"
        keys = await store.working_memory_keys(agent.id, "", later)
        assert (len(keys), "short" in keys) == (WORKING_MEMORY_KEYS_MAX, False)
        # Room for one key, four writers at once: exactly one gets it. (On PostgreSQL the
        # writers overlap once the pool has grown: reads in parallel grow it first.)
        assert await store.delete_working_memory(agent.id, "k0", later) is True
        for _ in range(RACE_WARMUPS):
            await asyncio.gather(*(memory.keys(now_us=later) for _ in range(RACERS)))
        results = await asyncio.gather(
            *(memory.set(f"race-{index}", 0, now_us=later) for index in range(RACERS)),
            return_exceptions=True,
        )
        assert sorted(type(result).__name__ for result in results) == [
            "WorkingMemoryEntry",
            *["WorkingMemoryFull"] * (RACERS - 1),
        ]
        assert len(await store.working_memory_keys(agent.id, "", later)) == WORKING_MEMORY_KEYS_MAX

    backend.run(scenario)


def test_delete_removes_a_live_key_only(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        memory = await _memory(store, agent)
        await memory.set("k", 1)
        await memory.set("brief", 1, ttl_s=1)
        assert await store.delete_working_memory(agent.id, "k", NOW_US) is True
        assert await store.delete_working_memory(agent.id, "k", NOW_US) is False
        assert await store.delete_working_memory(agent.id, "brief", NOW_US + SECOND_US) is False
        # The expired key was purged by that delete, not only hidden.
        assert await store.get_working_memory(agent.id, "brief", NOW_US) is None

    backend.run(scenario)


def test_a_closed_store_is_storage_unavailable(backend: Backend, entropy: Entropy) -> None:
    async def scenario(store: Conformance) -> None:
        await store.close()
        agent_id = entropy.new_id(AGENT_PREFIX)
        with pytest.raises(StorageUnavailable):
            await store.working_memory_keys(agent_id, "", NOW_US)
        with pytest.raises(StorageUnavailable):
            await store.delete_working_memory(agent_id, "k", NOW_US)

    backend.run(scenario)

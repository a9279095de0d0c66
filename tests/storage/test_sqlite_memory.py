"""Working memory in SqliteStore: round trips, replacing a key, expiry judged by the
caller's clock, lazy purging, key-order paging with a prefix and the key limit. (Step
commits that write keys: tests/storage/test_conformance_runs.py.)"""

import asyncio
import contextlib
import sqlite3
from pathlib import Path
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
from kelpie.storage import (
    Page,
    SqliteStore,
    WorkingMemoryFull,
)

from ._support import T0, agent_config, insert_agent

NOW_US: Final = us_from_datetime(T0)
SECOND_US: Final = 1_000_000
ALL: Final = Page(limit=100, ascending=True)


def _set(store: SqliteStore, agent_id: str, entry: WorkingMemoryEntry) -> WorkingMemoryEntry:
    return asyncio.run(store.set_working_memory(agent_id, entry))


def _keys(store: SqliteStore, agent_id: str, prefix: str = "", page: Page = ALL) -> list[str]:
    entries = asyncio.run(store.list_working_memory(agent_id, prefix, page, NOW_US))
    return [entry.key for entry in entries]


def _stored_rows(db_path: Path, agent_id: str) -> int:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        rows = db.execute("SELECT COUNT(*) FROM working_memory WHERE agent_id = ?", (agent_id,))
        count: int = rows.fetchone()[0]
    return count


@pytest.fixture
def agent(store: SqliteStore, entropy: Entropy) -> AgentConfig:
    config = agent_config(entropy, "ada")
    asyncio.run(insert_agent(store, config))
    return config


def test_set_then_get_round_trips_any_json_value(store: SqliteStore, agent: AgentConfig) -> None:
    values: list[JsonValue] = [{"a": [1, 2.5, None]}, ["x"], "text", 7, True, "ünï ☃"]
    for index, value in enumerate(values):
        entry = working_memory_entry(f"k{index}", value, ttl_s=None, now_us=NOW_US)
        assert _set(store, agent.id, entry) == entry
        assert asyncio.run(store.get_working_memory(agent.id, entry.key, NOW_US)) == entry


def test_setting_a_key_again_replaces_value_and_ttl_and_keeps_created_at(
    store: SqliteStore, agent: AgentConfig
) -> None:
    first = _set(store, agent.id, working_memory_entry("k", 1, ttl_s=60, now_us=NOW_US))
    later = NOW_US + 5 * SECOND_US
    second = _set(store, agent.id, working_memory_entry("k", 2, ttl_s=None, now_us=later))
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    stored = asyncio.run(store.get_working_memory(agent.id, "k", later))
    assert stored == second
    assert stored is not None
    assert (stored.value, stored.expires_at) == (2, None)


def test_a_key_is_invisible_from_its_expiry_on(store: SqliteStore, agent: AgentConfig) -> None:
    entry = _set(store, agent.id, working_memory_entry("k", "v", ttl_s=10, now_us=NOW_US))
    assert entry.expires_at is not None
    expiry_us = us_from_datetime(entry.expires_at)
    assert expiry_us == NOW_US + 10 * SECOND_US
    for now_us, visible in ((expiry_us - 1, True), (expiry_us, False)):
        found = asyncio.run(store.get_working_memory(agent.id, "k", now_us))
        listed = asyncio.run(store.list_working_memory(agent.id, "", ALL, now_us))
        keys = asyncio.run(store.working_memory_keys(agent.id, "", now_us))
        assert (found is not None, len(listed), keys) == (visible, int(visible), ["k"] * visible)


def test_expired_rows_are_purged_by_the_next_write_not_by_reads(
    store: SqliteStore, agent: AgentConfig, db_path: Path
) -> None:
    _set(store, agent.id, working_memory_entry("old", 1, ttl_s=1, now_us=NOW_US))
    after_us = NOW_US + 2 * SECOND_US
    assert asyncio.run(store.get_working_memory(agent.id, "old", after_us)) is None
    assert _stored_rows(db_path, agent.id) == 1
    _set(store, agent.id, working_memory_entry("new", 1, ttl_s=None, now_us=after_us))
    assert _stored_rows(db_path, agent.id) == 1
    assert _keys(store, agent.id) == ["new"]


def test_list_is_in_key_order_and_a_prefix_is_a_key_range(
    store: SqliteStore, agent: AgentConfig
) -> None:
    for key in ("b", "a:2", "a", "a:1", "a-b", "ab", "c"):
        _set(store, agent.id, working_memory_entry(key, key, ttl_s=None, now_us=NOW_US))
    assert _keys(store, agent.id) == ["a", "a-b", "a:1", "a:2", "ab", "b", "c"]
    assert _keys(store, agent.id, "a:") == ["a:1", "a:2"]
    assert _keys(store, agent.id, "a") == ["a", "a-b", "a:1", "a:2", "ab"]
    assert _keys(store, agent.id, "zz") == []
    assert asyncio.run(store.working_memory_keys(agent.id, "a:", NOW_US)) == ["a:1", "a:2"]


def test_list_pages_by_key_both_ways(store: SqliteStore, agent: AgentConfig) -> None:
    keys = [f"k{index:02d}" for index in range(7)]
    for key in keys:
        _set(store, agent.id, working_memory_entry(key, 0, ttl_s=None, now_us=NOW_US))
    pages: list[list[str]] = []
    after: str | None = None
    while page := _keys(store, agent.id, page=Page(limit=3, ascending=True, after=after)):
        pages.append(page)
        after = page[-1]
    assert pages == [keys[0:3], keys[3:6], keys[6:]]
    assert _keys(store, agent.id, page=Page(limit=2, after="k03")) == ["k02", "k01"]
    assert _keys(store, agent.id, page=Page(limit=2, ascending=True, before="k03")) == [
        "k01",
        "k02",
    ]
    # A cursor need not be a stored key: it is a position in key order.
    assert _keys(store, agent.id, page=Page(limit=2, ascending=True, after="k035")) == [
        "k04",
        "k05",
    ]


def test_set_for_an_unknown_agent_is_not_found(store: SqliteStore, entropy: Entropy) -> None:
    entry = working_memory_entry("k", 1, ttl_s=None, now_us=NOW_US)
    with pytest.raises(NotFound):
        _set(store, entropy.new_id(AGENT_PREFIX), entry)


def test_key_limit_counts_live_keys_only(store: SqliteStore, agent: AgentConfig) -> None:
    for index in range(WORKING_MEMORY_KEYS_MAX - 1):
        _set(store, agent.id, working_memory_entry(f"k{index}", 0, ttl_s=None, now_us=NOW_US))
    _set(store, agent.id, working_memory_entry("short", 0, ttl_s=1, now_us=NOW_US))
    full = working_memory_entry("one-more", 0, ttl_s=None, now_us=NOW_US)
    with pytest.raises(WorkingMemoryFull, match=str(WORKING_MEMORY_KEYS_MAX)):
        _set(store, agent.id, full)
    # Replacing a key is no new key; once `short` expires there is room again.
    _set(store, agent.id, working_memory_entry("k0", 1, ttl_s=None, now_us=NOW_US))
    later = working_memory_entry("one-more", 0, ttl_s=None, now_us=NOW_US + 2 * SECOND_US)
    assert _set(store, agent.id, later).key == "one-more"


def test_delete_removes_a_live_key_only(store: SqliteStore, agent: AgentConfig) -> None:
    _set(store, agent.id, working_memory_entry("k", 1, ttl_s=None, now_us=NOW_US))
    _set(store, agent.id, working_memory_entry("brief", 1, ttl_s=1, now_us=NOW_US))
    assert asyncio.run(store.delete_working_memory(agent.id, "k", NOW_US)) is True
    assert asyncio.run(store.delete_working_memory(agent.id, "k", NOW_US)) is False
    assert asyncio.run(store.delete_working_memory(agent.id, "brief", NOW_US + SECOND_US)) is False


def test_deleting_the_agent_deletes_its_working_memory(
    store: SqliteStore, agent: AgentConfig, db_path: Path
) -> None:
    _set(store, agent.id, working_memory_entry("k", 1, ttl_s=None, now_us=NOW_US))
    assert asyncio.run(store.delete_agent(agent.id)) is True
    assert _stored_rows(db_path, agent.id) == 0

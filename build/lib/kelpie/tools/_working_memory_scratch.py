"""Runs the working-memory tools inside a step. Writes are not stored as they happen: they
wait in the step's overlay and land with the step's commit, in its one transaction, like
every other effect of the step. Reads see the store with the overlay on top, so a later
call in the same step sees an earlier one's write."""

import json

from kelpie.env import Env
from kelpie.schemas import (
    WORKING_MEMORY_KEYS_MAX,
    WorkingMemoryEntry,
    datetime_from_us,
    working_memory_entry,
)
from kelpie.tools._working_memory import WorkingMemoryCall


class WorkingMemoryScratch:
    def __init__(self, env: Env, agent_id: str) -> None:
        self._env = env
        self._agent_id = agent_id
        # key -> the entry the step set, or None for a key it deleted; cleared on commit.
        self.pending: dict[str, WorkingMemoryEntry | None] = {}

    def written(self) -> tuple[tuple[WorkingMemoryEntry, ...], tuple[str, ...]]:
        """What the step commit writes: the keys set, and the keys deleted."""
        sets = tuple(entry for entry in self.pending.values() if entry is not None)
        deletes = tuple(key for key, entry in self.pending.items() if entry is None)
        return sets, deletes

    async def run(self, call: WorkingMemoryCall) -> tuple[str, bool]:
        if call.tool == "working_memory_set":
            return await self._set(call)
        if call.tool == "working_memory_get":
            entry = await self._get(call.key)
            if entry is None:
                return self._missing(call.key), False
            return json.dumps(entry.value, ensure_ascii=False), True
        if call.tool == "working_memory_delete":
            if await self._get(call.key) is None:
                return self._missing(call.key), False
            self.pending[call.key] = None
            return f"Deleted '{call.key}' from working memory.", True
        assert call.tool == "working_memory_list", f"not a working-memory tool: {call.tool}"
        return json.dumps(await self._keys(call.prefix), ensure_ascii=False), True

    async def _set(self, call: WorkingMemoryCall) -> tuple[str, bool]:
        now_us = self._env.clock.now_us()
        if await self._get(call.key) is None and await self._count() >= WORKING_MEMORY_KEYS_MAX:
            return (
                f"Working memory is full ({WORKING_MEMORY_KEYS_MAX} keys); delete keys you no"
                " longer need first.",
                False,
            )
        entry = working_memory_entry(call.key, call.value, ttl_s=call.ttl_s, now_us=now_us)
        self.pending[call.key] = entry
        expiry = "" if entry.expires_at is None else f" until {entry.expires_at.isoformat()}"
        return f"Stored '{call.key}' in working memory{expiry}.", True

    async def _get(self, key: str) -> WorkingMemoryEntry | None:
        now_us = self._env.clock.now_us()
        if key in self.pending:
            entry = self.pending[key]
            return entry if entry is None or _live(entry, now_us) else None
        return await self._env.store.get_working_memory(self._agent_id, key, now_us)

    async def _keys(self, prefix: str) -> list[str]:
        now_us = self._env.clock.now_us()
        keys = set(await self._env.store.working_memory_keys(self._agent_id, prefix, now_us))
        for key, entry in self.pending.items():
            if not key.startswith(prefix):
                continue
            if entry is not None and _live(entry, now_us):
                keys.add(key)
            else:
                keys.discard(key)
        return sorted(keys)

    async def _count(self) -> int:
        return len(await self._keys(""))

    def _missing(self, key: str) -> str:
        return f"Key '{key}' not found in working memory (it may have expired)."


def _live(entry: WorkingMemoryEntry, now_us: int) -> bool:
    return entry.expires_at is None or entry.expires_at > datetime_from_us(now_us)

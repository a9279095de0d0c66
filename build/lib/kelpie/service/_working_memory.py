"""Working memory through the API (a Kelpie extension): an agent's key/value scratch state,
read and written by clients here and by the agent's own tools during its turns."""

from kelpie.env import Env
from kelpie.errors import NotFound, ValidationFailed
from kelpie.schemas import (
    WorkingMemoryEntry,
    WorkingMemorySet,
    working_memory_entry,
    working_memory_key_error,
)
from kelpie.storage import Page


def _checked(key: str, *, what: str = "key") -> str:
    error = working_memory_key_error(key, what=what)
    if error is not None:
        raise ValidationFailed(error)
    return key


class WorkingMemoryService:
    def __init__(self, env: Env) -> None:
        self._env = env

    async def _check_agent(self, agent_id: str) -> None:
        if await self._env.store.get_agent(agent_id) is None:
            raise NotFound(f"Agent {agent_id} not found")

    async def list_entries(
        self, agent_id: str, prefix: str, page: Page
    ) -> list[WorkingMemoryEntry]:
        _checked(prefix, what="prefix")
        await self._check_agent(agent_id)
        now_us = self._env.clock.now_us()
        return await self._env.store.list_working_memory(agent_id, prefix, page, now_us)

    async def get(self, agent_id: str, key: str) -> WorkingMemoryEntry:
        _checked(key)
        await self._check_agent(agent_id)
        entry = await self._env.store.get_working_memory(agent_id, key, self._env.clock.now_us())
        if entry is None:
            raise NotFound(f"Key '{key}' not found in the working memory of agent {agent_id}")
        return entry

    async def set(self, agent_id: str, key: str, request: WorkingMemorySet) -> WorkingMemoryEntry:
        """Sets the key, replacing its value and TTL; a key that existed keeps created_at."""
        _checked(key)
        now_us = self._env.clock.now_us()
        entry = working_memory_entry(key, request.value, ttl_s=request.ttl_s, now_us=now_us)
        return await self._env.store.set_working_memory(agent_id, entry)

    async def delete(self, agent_id: str, key: str) -> None:
        _checked(key)
        await self._check_agent(agent_id)
        if not await self._env.store.delete_working_memory(agent_id, key, self._env.clock.now_us()):
            raise NotFound(f"Key '{key}' not found in the working memory of agent {agent_id}")

"""The stored system message (`message_ids[0]`): compiled at agent creation and rebuilt
whenever memory changes through the API, as Letta does (letta-api.md §1.3, §3.6). Turns
rebuild it themselves after memory tools."""

import datetime as dt
from collections.abc import Sequence

from kelpie.agent import compile_system_prompt
from kelpie.env import Env
from kelpie.errors import NotFound
from kelpie.memory import archive_id_of
from kelpie.schemas import (
    MESSAGE_PREFIX,
    AgentConfig,
    AgentState,
    Block,
    Message,
    datetime_from_us,
)
from kelpie.storage import PAGE_LIMIT_MAX, Page


class SystemPrompts:
    def __init__(self, env: Env) -> None:
        self._env = env

    def compile(
        self,
        agent: AgentConfig,
        blocks: Sequence[Block],
        now: dt.datetime,
        *,
        conversation_id: str | None = None,
        previous_message_count: int = 0,
        archival_count: int = 0,
    ) -> str:
        return compile_system_prompt(
            system=agent.system,
            blocks=blocks,
            agent_type=agent.agent_type,
            agent_id=agent.id,
            conversation_id=conversation_id,
            recompiled_at=now,
            timezone=agent.timezone or "UTC",
            previous_message_count=previous_message_count,
            archival_memory_count=archival_count,
            tool_rules=agent.tool_rules,
        )

    def first_message(
        self, agent: AgentState, blocks: Sequence[Block], now: dt.datetime
    ) -> Message:
        return Message(
            id=self._env.entropy.new_id(MESSAGE_PREFIX),
            agent_id=agent.id,
            role="system",
            text=self.compile(agent, blocks, now),
            created_at=now,
        )

    async def recompile(self, agent_id: str, *, dry_run: bool = False) -> str:
        """Rebuilds the agent's system message from its current memory; returns the text."""
        store = self._env.store
        agent = await store.get_agent(agent_id)
        if agent is None:
            raise NotFound(f"Agent {agent_id} not found")
        blocks = (await store.blocks_of_agents([agent_id]))[agent_id]
        text = self.compile(
            agent,
            blocks,
            datetime_from_us(self._env.clock.now_us()),
            previous_message_count=max(0, len(agent.message_ids) - 1),
            archival_count=await store.count_passages(archive_id_of(agent_id)),
        )
        found = await store.get_messages(agent.message_ids[:1])
        if not dry_run and found and found[0].role == "system" and found[0].text != text:
            await store.insert_messages([found[0].model_copy(update={"text": text})])
        return text

    async def recompile_agents_of_block(self, block_id: str) -> None:
        """Every agent sharing the block sees the edit in its prompt."""
        after: str | None = None
        while True:
            page = Page(limit=PAGE_LIMIT_MAX, ascending=True, after=after)
            agents = await self._env.store.list_block_agents(block_id, page)
            for agent in agents:
                await self.recompile(agent.id)
            if len(agents) < PAGE_LIMIT_MAX:
                return
            after = agents[-1].id

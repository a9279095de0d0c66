"""Exporting an agent as a Letta agent file (`GET /v1/agents/{id}/export`), in the shape
Letta 0.16 writes: file-local ids (`agent-0`, `block-0`, `tool-0`, `message-0`), the
agent's blocks, tools and in-context messages, secrets by name with their values blanked.
A Kelpie export imports into Kelpie and into Letta.
"""

from typing import Final

from kelpie import __version__
from kelpie.env import Env
from kelpie.errors import InvalidInput
from kelpie.schemas import (
    AgentFile,
    AgentFileAgent,
    AgentFileBlock,
    AgentFileTool,
    AgentState,
    Block,
    Tool,
    datetime_from_us,
)
from kelpie.service._agents import ALL_RELATIONSHIPS, AgentService
from kelpie.service._letta_messages import to_letta_message

# The file's own id of the one agent an export holds.
AGENT_FILE_ID: Final = "agent-0"
# Conversation ids that mean the agent's default thread.
_DEFAULT_CONVERSATIONS: Final = frozenset({"", "default"})


def _file_block(block: Block, file_id: str) -> AgentFileBlock:
    fields = block.model_dump(include=set(AgentFileBlock.model_fields) - {"id"})
    return AgentFileBlock(**fields, id=file_id)


def _file_tool(tool: Tool, file_id: str) -> AgentFileTool:
    fields = tool.model_dump(include=set(AgentFileTool.model_fields) - {"id", "metadata_"})
    return AgentFileTool(**fields, id=file_id, metadata_=tool.metadata_ or {})


class AgentExporter:
    def __init__(self, env: Env, agents: AgentService) -> None:
        self._env = env
        self._agents = agents

    async def export(
        self, agent_id: str, *, scrub_messages: bool = False, conversation_id: str | None = None
    ) -> AgentFile:
        if conversation_id is not None and conversation_id not in _DEFAULT_CONVERSATIONS:
            if conversation_id != agent_id:
                raise InvalidInput(
                    "Exporting a conversation other than the agent's default one is not"
                    " supported by this Kelpie version; leave out conversation_id"
                )
        agent = await self._agents.retrieve(agent_id, ALL_RELATIONSHIPS)
        # In the agent's own order: an import keeps it, so the prompt lists blocks alike.
        blocks, tools = agent.blocks, agent.tools
        block_ids = {block.id: f"block-{i}" for i, block in enumerate(blocks)}
        tool_ids = {tool.id: f"tool-{i}" for i, tool in enumerate(tools)}
        return AgentFile(
            agents=[await self._file_agent(agent, block_ids, tool_ids, scrub_messages)],
            blocks=[_file_block(block, block_ids[block.id]) for block in blocks],
            tools=[_file_tool(tool, tool_ids[tool.id]) for tool in tools],
            metadata={"revision_id": f"kelpie-{__version__}"},
            created_at=datetime_from_us(self._env.clock.now_us()),
        )

    async def _file_agent(
        self,
        agent: AgentState,
        block_ids: dict[str, str],
        tool_ids: dict[str, str],
        scrub_messages: bool,
    ) -> AgentFileAgent:
        stored = [] if scrub_messages else await self._env.store.get_messages(agent.message_ids)
        messages = [
            to_letta_message(message, message_id=f"message-{i}", agent_id=AGENT_FILE_ID)
            for i, message in enumerate(stored)
        ]
        # Secrets travel by name only; the importer supplies the values.
        blanked = {secret.key: "" for secret in agent.secrets} or None
        return AgentFileAgent(
            id=AGENT_FILE_ID,
            name=agent.name,
            agent_type=agent.agent_type,
            system=agent.system,
            description=agent.description,
            metadata=agent.metadata,
            llm_config=agent.llm_config,
            embedding_config=agent.embedding_config,
            model_settings=agent.model_settings,
            compaction_settings=agent.compaction_settings,
            memory_blocks=[],
            tools=[],
            tool_ids=[tool_ids[tool.id] for tool in agent.tools],
            block_ids=[block_ids[block.id] for block in agent.blocks],
            source_ids=[],
            tool_rules=agent.tool_rules,
            tags=agent.tags,
            include_base_tools=False,
            include_base_tool_rules=False,
            initial_message_sequence=None,
            tool_exec_environment_variables=blanked or {},
            secrets=blanked,
            message_buffer_autoclear=agent.message_buffer_autoclear,
            enable_sleeptime=agent.enable_sleeptime or False,
            response_format=agent.response_format,
            timezone=agent.timezone,
            max_files_open=agent.max_files_open,
            per_file_view_window_char_limit=agent.per_file_view_window_char_limit,
            hidden=agent.hidden,
            in_context_message_ids=[message.id for message in messages],
            messages=messages,
        )

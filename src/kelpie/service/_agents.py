"""Agents: create, read, update, delete, and their blocks, tools and tags."""

from collections.abc import Callable, Collection, Sequence
from typing import Final, TypeVar

from pydantic import ValidationError

from kelpie.env import Env
from kelpie.errors import InvalidInput, NotFound, ValidationFailed
from kelpie.llm import SUPPORTED_ENDPOINT_TYPES
from kelpie.memory import archive_id_of
from kelpie.schemas import (
    AGENT_PREFIX,
    AGENT_TAG_CHARS_MAX,
    AgentConfig,
    AgentCreate,
    AgentFields,
    AgentState,
    AgentUpdate,
    Block,
    BlockUpdate,
    LlmConfig,
    Secret,
    Tool,
    datetime_from_us,
    describe_validation_errors,
)
from kelpie.service._agent_states import with_relationships
from kelpie.service._blocks import apply_block_update, new_block
from kelpie.service._names import random_agent_name
from kelpie.service._prompts import SystemPrompts
from kelpie.storage import AgentQuery, BlockChange, NewAgent, Page
from kelpie.tools import base_tool_rules, default_tool_names

ALL_RELATIONSHIPS: Final = frozenset({"agent.blocks", "agent.tools", "agent.tags", "agent.secrets"})
# Agent types whose base tool rules are on by default (letta_v1_agent turned them off).
_BASE_RULES_ON_BY_DEFAULT: Final = frozenset({"memgpt_agent", "memgpt_v2_agent", "sleeptime_agent"})
# Request fields copied onto the stored config as they are.
_PLAIN_FIELDS: Final = (
    "name",
    "system",
    "description",
    "metadata",
    "model_settings",
    "compaction_settings",
    "enable_sleeptime",
    "hidden",
    "timezone",
    "message_buffer_autoclear",
    "max_files_open",
    "per_file_view_window_char_limit",
    "response_format",
    "identity_ids",
    "project_id",
    "template_id",
    "base_template_id",
    "tool_rules",
)


def _unique_tags(tags: Sequence[str]) -> list[str]:
    for tag in tags:
        if not tag or len(tag) > AGENT_TAG_CHARS_MAX:
            raise InvalidInput(f"Tags must be 1 to {AGENT_TAG_CHARS_MAX} characters, got '{tag}'")
    return list(dict.fromkeys(tags))


def _secrets(request: AgentFields) -> list[Secret] | None:
    values = request.secrets or request.tool_exec_environment_variables
    if values is None:
        return None
    return [Secret(key=key, value=value) for key, value in values.items()]


def _with_overrides(llm: LlmConfig, request: AgentFields) -> LlmConfig:
    changes: dict[str, object] = {}
    if request.context_window_limit is not None:
        changes["context_window"] = request.context_window_limit
    if request.max_tokens is not None:
        changes["max_tokens"] = request.max_tokens
    if request.parallel_tool_calls is not None:
        changes["parallel_tool_calls"] = request.parallel_tool_calls
    return llm.model_copy(update=changes) if changes else llm


T = TypeVar("T")


def _in_order(
    keys: Sequence[str], found: dict[str, T], missing: Callable[[str], Exception]
) -> list[T]:
    """The found objects in the order asked for, each once; the first key not found raises."""
    result = []
    for key in dict.fromkeys(keys):
        if key not in found:
            raise missing(key)
        result.append(found[key])
    return result


def tool_names_of(request: AgentCreate) -> list[str]:
    """The tools a create request attaches by name: the agent type's base tools (unless
    turned off), then the ones it names."""
    names = [*(request.tools or [])]
    if request.include_base_tools:
        names = [*default_tool_names(request.agent_type), *names]
    return names


def _block_order(block: Block) -> tuple[object, str]:
    return block.created_at, block.id


def _tool_order(tool: Tool) -> tuple[object, str]:
    return tool.created_at, tool.id


class AgentService:
    def __init__(self, env: Env) -> None:
        self._env = env
        self.prompts = SystemPrompts(env)

    # Reading --------------------------------------------------------------------------

    async def _config(self, agent_id: str, *, message_ids: bool = True) -> AgentState:
        agent = await self._env.store.get_agent(agent_id, message_ids=message_ids)
        if agent is None:
            raise NotFound(f"Agent {agent_id} not found")
        return agent

    async def _states(
        self, agents: Sequence[AgentState], include: Collection[str]
    ) -> list[AgentState]:
        """AgentStates with the asked-for relationships loaded in one query each."""
        ids = [agent.id for agent in agents]
        store = self._env.store
        tags = await store.tags_of_agents(ids) if "agent.tags" in include else {}
        blocks = await store.blocks_of_agents(ids) if "agent.blocks" in include else {}
        tools = await store.tools_of_agents(ids) if "agent.tools" in include else {}
        return [
            with_relationships(
                agent,
                include,
                tags=tags.get(agent.id, []),
                blocks=blocks.get(agent.id, []),
                tools=tools.get(agent.id, []),
            )
            for agent in agents
        ]

    async def retrieve(
        self, agent_id: str, include: Collection[str], *, message_ids: bool = True
    ) -> AgentState:
        """The agent with the relationships `include` names; with `message_ids` False, its
        in-context ids are left out (a turn keeps them in its activation)."""
        config = await self._config(agent_id, message_ids=message_ids)
        [state] = await self._states([config], include)
        return state

    async def count(self) -> int:
        return await self._env.store.count_agents()

    async def list_agents(
        self, query: AgentQuery, page: Page, include: Collection[str]
    ) -> list[AgentState]:
        return await self._states(await self._env.store.list_agents(query, page), include)

    # Writing --------------------------------------------------------------------------

    def _llm_config(self, request: AgentFields) -> LlmConfig:
        if request.llm_config is not None:
            kind = request.llm_config.model_endpoint_type
            if kind not in SUPPORTED_ENDPOINT_TYPES:
                supported = ", ".join(sorted(SUPPORTED_ENDPOINT_TYPES))
                raise InvalidInput(
                    f"llm_config.model_endpoint_type '{kind}' is not supported"
                    f" (supported: {supported}); pass a model handle instead"
                )
            return request.llm_config
        handle = request.model or self._env.config.default_model
        if handle is None:
            raise InvalidInput(
                "model is required: pass a handle such as 'openai/gpt-4o-mini'"
                " (GET /v1/models/ lists them) or set KELPIE_DEFAULT_MODEL"
            )
        return self._env.models.resolve_llm(handle)

    async def _existing_blocks(self, block_ids: Sequence[str]) -> list[Block]:
        found = await self._env.store.get_blocks(list(dict.fromkeys(block_ids)))
        return _in_order(
            block_ids, {b.id: b for b in found}, lambda i: NotFound(f"Block {i} not found")
        )

    async def _existing_tools(self, tool_ids: Sequence[str]) -> list[Tool]:
        found = await self._env.store.get_tools(list(dict.fromkeys(tool_ids)))
        return _in_order(
            tool_ids, {t.id: t for t in found}, lambda i: NotFound(f"Tool {i} not found")
        )

    async def _tools_by_name(self, names: Sequence[str]) -> list[Tool]:
        found = await self._env.store.get_tools_by_name(list(dict.fromkeys(names)))
        by_name = {tool.name: tool for tool in found}
        missing = [name for name in dict.fromkeys(names) if name not in by_name]
        if missing:
            raise InvalidInput(f"tools not found by name: {', '.join(missing)}")
        return _in_order(names, by_name, lambda name: InvalidInput(name))

    @staticmethod
    def _check_labels(blocks: Sequence[Block]) -> None:
        seen: set[str] = set()
        for block in blocks:
            if block.label in seen:
                raise InvalidInput(f"Duplicate block label '{block.label}' on one agent")
            seen.add(block.label)

    def build(
        self,
        request: AgentCreate,
        *,
        blocks: Sequence[Block],
        tools: Sequence[Tool],
        now_us: int,
    ) -> NewAgent:
        """The records of a new agent, nothing written: its own `memory_blocks`, then
        `blocks` (stored or about to be), the resolved `tools`, and its system message."""
        now = datetime_from_us(now_us)
        llm = _with_overrides(self._llm_config(request), request)
        embedding = request.embedding_config or self._env.models.resolve_embedding(
            request.embedding
        )
        new_blocks = [new_block(self._env, block, now_us) for block in request.memory_blocks or []]
        all_blocks = [*new_blocks, *blocks]
        self._check_labels(all_blocks)
        include_rules = request.include_base_tool_rules
        if include_rules is None:
            include_rules = request.agent_type in _BASE_RULES_ON_BY_DEFAULT
        rules = request.tool_rules
        if rules is None:
            rules = base_tool_rules([t.name for t in tools]) if include_rules else []
        fields = request.model_dump(include=set(_PLAIN_FIELDS) - {"name"}, exclude_none=True)
        fields["tool_rules"] = rules
        agent = AgentState(
            **fields,
            id=self._env.entropy.new_id(AGENT_PREFIX),
            name=request.name or random_agent_name(self._env.entropy),
            agent_type=request.agent_type,
            llm_config=llm,
            model=llm.handle,
            embedding_config=embedding,
            embedding=embedding.handle,
            secrets=_secrets(request) or [],
            created_at=now,
            updated_at=now,
        )
        system = self.prompts.first_message(agent, all_blocks, now)
        agent.message_ids = [system.id]
        return NewAgent(
            agent=agent,
            new_blocks=tuple(new_blocks),
            block_ids=tuple(block.id for block in all_blocks),
            tool_ids=tuple(dict.fromkeys(tool.id for tool in tools)),
            tags=tuple(_unique_tags(request.tags or [])),
            messages=(system,),
        )

    async def create(self, request: AgentCreate) -> AgentState:
        now_us = self._env.clock.now_us()
        blocks = await self._existing_blocks(request.block_ids or [])
        tools = [
            *await self._tools_by_name(tool_names_of(request)),
            *await self._existing_tools(request.tool_ids or []),
        ]
        new = self.build(request, blocks=blocks, tools=tools, now_us=now_us)
        agent = new.agent
        assert isinstance(agent, AgentState), "build makes AgentStates"
        await self._env.store.insert_agent(
            agent,
            new_blocks=new.new_blocks,
            block_ids=new.block_ids,
            tool_ids=new.tool_ids,
            tags=new.tags,
            messages=new.messages,
        )
        # Built from what was just written: the store hands back the same on a read.
        unique_tools = list({tool.id: tool for tool in tools}.values())
        return with_relationships(
            agent,
            ALL_RELATIONSHIPS,
            tags=sorted(new.tags),
            blocks=sorted([*new.new_blocks, *blocks], key=_block_order),
            tools=sorted(unique_tools, key=_tool_order),
        )

    async def update(self, agent_id: str, request: AgentUpdate) -> AgentState:
        agent = await self._config(agent_id)
        sent = request.model_fields_set
        changes = request.model_dump(include=set(_PLAIN_FIELDS) & sent, exclude_none=True)
        if "tool_rules" in changes:
            changes["tool_rules"] = request.tool_rules
        # An explicit null for the in-context list means "leave it", not "no list".
        if request.message_ids is not None:
            changes["message_ids"] = request.message_ids
        for field in ("last_run_completion", "last_run_duration_ms", "last_stop_reason"):
            if field in sent:
                changes[field] = getattr(request, field)
        if request.model is not None or request.llm_config is not None:
            changes["llm_config"] = self._llm_config(request)
        llm = _with_overrides(changes.get("llm_config", agent.llm_config), request)
        if llm != agent.llm_config:
            changes["llm_config"] = llm
            changes["model"] = llm.handle
        if request.embedding is not None or request.embedding_config is not None:
            embedding = request.embedding_config or self._env.models.resolve_embedding(
                request.embedding
            )
            changes.update(embedding_config=embedding, embedding=embedding.handle)
        if (secrets := _secrets(request)) is not None:
            changes["secrets"] = secrets
        block_ids = None
        if request.block_ids is not None:
            blocks = await self._existing_blocks(request.block_ids)
            self._check_labels(blocks)
            block_ids = [block.id for block in blocks]
        tool_ids = None
        if request.tool_ids is not None:
            tool_ids = [tool.id for tool in await self._existing_tools(request.tool_ids)]
        now = datetime_from_us(self._env.clock.now_us())
        # Validated afresh: `changes` holds raw request values (tool rules as dicts).
        try:
            config = AgentConfig.model_validate(
                {**agent.model_dump(), **changes, "updated_at": max(now, agent.updated_at)}
            )
        except ValidationError as error:
            raise ValidationFailed(describe_validation_errors(error.errors())) from error
        await self._env.store.update_agent(
            config,
            block_ids=block_ids,
            tool_ids=tool_ids,
            tags=None if request.tags is None else _unique_tags(request.tags),
        )
        return await self.retrieve(agent_id, ALL_RELATIONSHIPS)

    async def delete(self, agent_id: str) -> None:
        if not await self._env.store.delete_agent(agent_id):
            raise NotFound(f"Agent {agent_id} not found")
        # The agent's own archive and workspace go with it; archives attached to it stay.
        await self._env.store.delete_archive(archive_id_of(agent_id))
        await self._env.sandbox.sessions.discard(agent_id)
        self._env.sandbox.workspaces.remove(agent_id)

    # Core memory ----------------------------------------------------------------------

    async def list_blocks(self, agent_id: str, page: Page) -> list[Block]:
        await self._config(agent_id)
        return await self._env.store.list_agent_blocks(agent_id, page)

    async def retrieve_block(self, agent_id: str, label: str) -> Block:
        await self._config(agent_id)
        block = await self._env.store.get_agent_block(agent_id, label)
        if block is None:
            raise NotFound(f"Block with label '{label}' not found on agent {agent_id}")
        return block

    async def update_block(self, agent_id: str, label: str, request: BlockUpdate) -> Block:
        block = apply_block_update(
            await self.retrieve_block(agent_id, label), request, self._env.clock.now_us()
        )
        await self._env.store.update_block(
            block, change=BlockChange(source="api", agent_id=agent_id)
        )
        await self.prompts.recompile_agents_of_block(block.id)
        return block

    async def attach_block(self, agent_id: str, block_id: str) -> AgentState:
        await self._config(agent_id)
        [block] = await self._existing_blocks([block_id])
        current = await self._env.store.get_agent_block(agent_id, block.label)
        if current is not None and current.id != block.id:
            raise InvalidInput(
                f"Agent {agent_id} already has a block labelled '{block.label}' ({current.id})"
            )
        await self._env.store.attach_block(agent_id, block, self._env.clock.now_us())
        return await self.retrieve(agent_id, ALL_RELATIONSHIPS)

    async def detach_block(self, agent_id: str, block_id: str) -> AgentState:
        await self._config(agent_id)
        await self._existing_blocks([block_id])
        await self._env.store.detach_block(agent_id, block_id, self._env.clock.now_us())
        return await self.retrieve(agent_id, ALL_RELATIONSHIPS)

    # Tools ----------------------------------------------------------------------------

    async def list_tools(self, agent_id: str, page: Page) -> list[Tool]:
        await self._config(agent_id)
        return await self._env.store.list_agent_tools(agent_id, page)

    async def attach_tool(self, agent_id: str, tool_id: str) -> AgentState:
        await self._config(agent_id)
        await self._existing_tools([tool_id])
        await self._env.store.attach_tool(agent_id, tool_id, self._env.clock.now_us())
        return await self.retrieve(agent_id, ALL_RELATIONSHIPS)

    async def detach_tool(self, agent_id: str, tool_id: str) -> AgentState:
        await self._config(agent_id)
        await self._existing_tools([tool_id])
        await self._env.store.detach_tool(agent_id, tool_id, self._env.clock.now_us())
        return await self.retrieve(agent_id, ALL_RELATIONSHIPS)

    async def set_tool_approval(self, agent_id: str, tool_name: str, required: bool) -> AgentState:
        """Adds (or removes) the `requires_approval` rule for one of the agent's tools."""
        agent = await self.retrieve(agent_id, ("agent.tools",))
        if tool_name not in {tool.name for tool in agent.tools}:
            raise NotFound(f"Tool '{tool_name}' is not attached to agent {agent_id}")
        rules = [
            rule.model_dump()
            for rule in agent.tool_rules
            if not (rule.type == "requires_approval" and rule.tool_name == tool_name)
        ]
        if required:
            rules.append({"type": "requires_approval", "tool_name": tool_name})
        return await self.update(agent_id, AgentUpdate.model_validate({"tool_rules": rules}))

    async def list_tags(
        self, *, after: str | None, limit: int, query_text: str | None
    ) -> list[str]:
        return await self._env.store.list_tags(after=after, limit=limit, query_text=query_text)

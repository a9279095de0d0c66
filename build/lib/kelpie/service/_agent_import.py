"""Importing agent files (`POST /v1/agents/import`), as Letta 0.16 does: every agent,
block and message gets a fresh id; tools are matched by name (a file's custom tool
redefines a stored one only with `override_existing_tools`; built-in tools are never
redefined); everything is written in one transaction, so a failed import leaves nothing.

Files may come from Letta or from Kelpie. Groups, folders, MCP servers and skills in a
file are not imported: Kelpie has none of those yet.
"""

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Final, TypeVar

from pydantic import ValidationError

from kelpie.env import Env
from kelpie.errors import InvalidInput, KelpieError, ValidationFailed
from kelpie.schemas import (
    BLOCK_LIMIT_CHARS_DEFAULT,
    MESSAGE_PREFIX,
    TOOL_PREFIX,
    AgentFile,
    AgentFileAgent,
    AgentFileBlock,
    AgentFileTool,
    Block,
    BlockCreate,
    Message,
    Tool,
    datetime_from_us,
    decode_json,
    describe_validation_errors,
    us_from_datetime,
)
from kelpie.service._agents import AgentService, tool_names_of
from kelpie.service._blocks import new_block
from kelpie.service._letta_messages import from_letta_message
from kelpie.service._tools import name_and_schema
from kelpie.storage import AgentsImport, NewAgent

COPY_SUFFIX: Final = "_copy"
LEGACY_FORMAT_DETAIL: Final = (
    "Legacy AgentSchema format is deprecated. Please use the new AgentFileSchema format"
    " with 'agents' field."
)
# Tool fields a file's custom tool may redefine on a stored tool of the same name.
_TOOL_DEFINITION_FIELDS: Final = (
    "description",
    "source_type",
    "source_code",
    "json_schema",
    "args_json_schema",
    "return_char_limit",
    "tags",
    "pip_requirements",
    "npm_requirements",
    "default_requires_approval",
    "enable_parallel_execution",
    "metadata_",
)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportOptions:
    """The form fields of an import request (Letta's defaults)."""

    append_copy_suffix: bool = True
    override_existing_tools: bool = True
    strip_messages: bool = False
    name: str | None = None
    model: str | None = None
    embedding: str | None = None
    project_id: str | None = None
    secrets_json: str | None = None


def parse_agent_file(data: bytes) -> AgentFile:
    """The file, checked field by field (422), or a 400 for what is not an agent file."""
    try:
        parsed = decode_json(data)
        if isinstance(parsed, str):  # some published files are JSON-encoded twice
            parsed = decode_json(parsed)
    except ValueError as error:  # UnicodeDecodeError is one too
        raise InvalidInput(f"Corrupted agent file format: {error}") from error
    if not isinstance(parsed, dict) or not isinstance(parsed.get("agents"), list):
        raise InvalidInput(LEGACY_FORMAT_DETAIL)
    try:
        return AgentFile.model_validate(parsed)
    except ValidationError as error:
        raise ValidationFailed(
            f"Invalid agent file: {describe_validation_errors(error.errors())}"
        ) from error


def _secrets(text: str | None) -> dict[str, str]:
    if text is None:
        return {}
    try:
        values = decode_json(text)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise InvalidInput("secrets must be a valid JSON string")
    return {str(key): "" if value is None else str(value) for key, value in values.items()}


def _unique(kind: str, ids: Sequence[str]) -> None:
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise ValidationFailed(f"{kind}: the id '{item_id}' is used twice")
        seen.add(item_id)


def _referenced(where: str, kind: str, ids: Sequence[str], known: dict[str, T]) -> list[T]:
    for item_id in ids:
        if item_id not in known:
            raise ValidationFailed(f"{where}: '{item_id}' is not a {kind} in this file")
    return [known[item_id] for item_id in ids]


def _check_references(file: AgentFile) -> None:
    _unique("agents", [agent.id for agent in file.agents])
    _unique("blocks", [block.id for block in file.blocks])
    _unique("tools", [tool.id for tool in file.tools])
    blocks = {block.id: block for block in file.blocks}
    tools = {tool.id: tool for tool in file.tools}
    for index, agent in enumerate(file.agents):
        where = f"agents[{index}]"
        _referenced(f"{where}.block_ids", "block", agent.block_ids or [], blocks)
        _referenced(f"{where}.tool_ids", "tool", agent.tool_ids or [], tools)
        messages = {message.id: message for message in agent.messages}
        _unique(f"{where}.messages", [message.id for message in agent.messages])
        _referenced(
            f"{where}.in_context_message_ids",
            "message of this agent",
            agent.in_context_message_ids,
            messages,
        )


class AgentImporter:
    def __init__(self, env: Env, agents: AgentService) -> None:
        self._env = env
        self._agents = agents

    async def import_file(self, data: bytes, options: ImportOptions) -> list[str]:
        """Creates the file's agents; returns their new ids, in the file's order."""
        file = parse_agent_file(data)
        _check_references(file)
        secrets = _secrets(options.secrets_json)
        now_us = self._env.clock.now_us()
        tools, created, replaced = await self._tools(file.tools, options, now_us)
        blocks = {item.id: self._block(i, item, now_us) for i, item in enumerate(file.blocks)}
        assert len(blocks) == len(file.blocks), "block ids were checked unique"
        by_name = {tool.name: tool for tool in tools.values()}
        names = [name for agent in file.agents for name in tool_names_of(agent)]
        wanted = [name for name in dict.fromkeys(names) if name not in by_name]
        for tool in await self._env.store.get_tools_by_name(wanted):
            by_name[tool.name] = tool
        new_agents = []
        for index, agent in enumerate(file.agents):
            with _located(f"agents[{index}] ({agent.name or agent.id})"):
                attached = [
                    *_named_tools(tool_names_of(agent), by_name),
                    *[tools[tool_id] for tool_id in agent.tool_ids or []],
                ]
                request = _request(agent, options, secrets)
                own_blocks = [blocks[block_id] for block_id in agent.block_ids or []]
                new = self._agents.build(request, blocks=own_blocks, tools=attached, now_us=now_us)
                new_agents.append(self._with_history(new, agent, own_blocks, options))
        batch = AgentsImport(
            tools_created=tuple(created),
            tools_replaced=tuple(replaced),
            blocks_created=tuple(blocks.values()),
            agents=tuple(new_agents),
        )
        await self._env.store.import_agents(batch)
        return [new.agent.id for new in new_agents]

    # Tools and blocks -----------------------------------------------------------------

    async def _tools(
        self, file_tools: Sequence[AgentFileTool], options: ImportOptions, now_us: int
    ) -> tuple[dict[str, Tool], list[Tool], list[Tool]]:
        """Each file tool as the tool it becomes: the stored one of its name (redefined if
        it is custom and `override_existing_tools`), or a new one."""
        defined = [self._tool_definition(i, tool, now_us) for i, tool in enumerate(file_tools)]
        names = [tool.name for tool in defined]
        for name in names:
            if names.count(name) > 1:
                raise ValidationFailed(f"tools: more than one tool is named '{name}'")
        stored = {
            t.name: t
            for t in await self._env.store.get_tools_by_name([tool.name for tool in defined])
        }
        result: dict[str, Tool] = {}
        created: list[Tool] = []
        replaced: list[Tool] = []
        for file_tool, tool in zip(file_tools, defined, strict=True):
            existing = stored.get(tool.name)
            if existing is None:
                created.append(tool)
            elif (
                options.override_existing_tools
                and existing.tool_type == "custom"
                and tool.tool_type == "custom"
            ):
                changes = tool.model_dump(include=set(_TOOL_DEFINITION_FIELDS))
                tool = existing.model_copy(update={**changes, "updated_at": tool.updated_at})
                if tool != existing:
                    replaced.append(tool)
            else:
                tool = existing
            result[file_tool.id] = tool
        return result, created, replaced

    def _tool_definition(self, index: int, file_tool: AgentFileTool, now_us: int) -> Tool:
        with _located(f"tools[{index}] ({file_tool.name or file_tool.id})"):
            name, schema, description = None, file_tool.json_schema, file_tool.description
            if file_tool.source_code or schema is not None:
                name, schema, description = name_and_schema(
                    file_tool.source_code or "",
                    schema,
                    description,
                    file_tool.source_type,
                    runs_source=file_tool.tool_type in (None, "custom"),
                )
            name = file_tool.name or name
            if not name:
                raise ValidationFailed("a tool needs a name, a json_schema or source_code")
            fields = file_tool.model_dump(
                exclude={
                    "id",
                    "name",
                    "json_schema",
                    "description",
                    "created_by_id",
                    "last_updated_by_id",
                },
                exclude_none=True,
            )
            now = datetime_from_us(now_us)
            return Tool(
                **fields,
                id=self._env.entropy.new_id(TOOL_PREFIX),
                name=name,
                description=description,
                json_schema=schema,
                created_at=now,
                updated_at=now,
            )

    def _block(self, index: int, file_block: AgentFileBlock, now_us: int) -> Block:
        """A new block; its limit grows to fit its value (Letta no longer enforces limits,
        and Kelpie keeps every value within its block's limit). Creation times step by a
        microsecond in file order: agents list their blocks in that order."""
        with _located(f"blocks[{index}] ({file_block.label})"):
            limit = max(file_block.limit or BLOCK_LIMIT_CHARS_DEFAULT, len(file_block.value))
            fields = file_block.model_dump(exclude={"id", "limit"}, exclude_none=True)
            try:
                request = BlockCreate.model_validate({**fields, "limit": limit})
            except ValidationError as error:
                raise ValidationFailed(describe_validation_errors(error.errors())) from error
            return new_block(self._env, request, now_us + index)

    # History --------------------------------------------------------------------------

    def _with_history(
        self,
        new: NewAgent,
        file_agent: AgentFileAgent,
        blocks: Sequence[Block],
        options: ImportOptions,
    ) -> NewAgent:
        """`new` with the file's messages instead of a fresh history. Its in-context list
        starts with a system message compiled now (the file's one names the old agent)."""
        agent = new.agent
        messages = [] if options.strip_messages else list(self._messages(file_agent, agent.id))
        ids = {file_id: [m.id for m in group] for file_id, group in messages}
        stored = [m for _, group in messages for m in group]
        in_context = [] if options.strip_messages else file_agent.in_context_message_ids
        context_ids = [message_id for file_id in in_context for message_id in ids[file_id]]
        by_id = {m.id: m for m in stored}
        system = new.messages[0]
        first = by_id.get(context_ids[0]) if context_ids else None
        if first is not None and first.role == "system":
            system = first
            context_ids = context_ids[1:]
        elif stored:
            start = us_from_datetime(min(m.created_at for m in stored))
            system = system.model_copy(update={"created_at": datetime_from_us(start - 1)})
            stored.append(system)
        else:
            stored.append(system)
        all_blocks = [*new.new_blocks, *blocks]
        now = datetime_from_us(self._env.clock.now_us())
        text = self._agents.prompts.compile(
            agent, all_blocks, now, previous_message_count=len(context_ids)
        )
        stored = [m.model_copy(update={"text": text}) if m.id == system.id else m for m in stored]
        agent.message_ids = [system.id, *context_ids]
        return dataclasses.replace(new, messages=tuple(stored))

    def _messages(
        self, file_agent: AgentFileAgent, agent_id: str
    ) -> Iterator[tuple[str, list[Message]]]:
        """The file's messages as stored messages, grouped by file id, their times kept
        but made strictly increasing so the history keeps the file's order."""
        floor_us: int | None = None
        fallback = datetime_from_us(self._env.clock.now_us())
        for file_message in file_agent.messages:
            group = []
            for fields in from_letta_message(file_message):
                at_us = us_from_datetime(file_message.created_at or fallback)
                floor_us = at_us if floor_us is None else max(at_us, floor_us + 1)
                group.append(
                    Message(
                        **fields,
                        id=self._env.entropy.new_id(MESSAGE_PREFIX),
                        agent_id=agent_id,
                        created_at=datetime_from_us(floor_us),
                    )
                )
            yield file_message.id, group


def _request(
    agent: AgentFileAgent, options: ImportOptions, secrets: dict[str, str]
) -> AgentFileAgent:
    """The file agent as a create request, with the import's overrides applied."""
    changes: dict[str, Any] = {"tool_ids": None, "block_ids": None}
    if options.name:
        changes["name"] = options.name
    elif options.append_copy_suffix and agent.name:
        changes["name"] = agent.name + COPY_SUFFIX
    if options.model:
        changes.update(model=options.model, llm_config=None)
    if options.embedding:
        changes.update(embedding=options.embedding, embedding_config=None)
    if options.project_id:
        changes["project_id"] = options.project_id
    # Exports carry secret names with their values blanked; the import fills them in.
    keys = agent.secrets or agent.tool_exec_environment_variables
    if keys is not None:
        values = {key: secrets.get(key, value) for key, value in keys.items()}
        changes.update(secrets=values, tool_exec_environment_variables=None)
    return agent.model_copy(update=changes)


def _named_tools(names: Sequence[str], by_name: dict[str, Tool]) -> list[Tool]:
    missing = [name for name in dict.fromkeys(names) if name not in by_name]
    if missing:
        raise InvalidInput(f"tools not found by name: {', '.join(missing)}")
    return [by_name[name] for name in names]


@contextlib.contextmanager
def _located(where: str) -> Iterator[None]:
    """Prefixes the detail of a Kelpie error raised inside with where in the file it
    happened, e.g. `agents[0] (Evie): ...`."""
    try:
        yield
    except KelpieError as error:
        if type(error).__init__ is not KelpieError.__init__:
            raise
        raise type(error)(f"{where}: {error.detail}") from error

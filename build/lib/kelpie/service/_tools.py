"""Tools: custom tools defined by Python source (name and JSON schema derived from the
function and its docstring) and the built-in set, stored as Tool records."""

from kelpie.env import Env
from kelpie.errors import Conflict, InvalidInput, NotFound
from kelpie.schemas import TOOL_PREFIX, Tool, ToolCreate, ToolUpdate, datetime_from_us
from kelpie.storage import Page, ToolQuery
from kelpie.tools import BUILTIN_TOOLS, check_schema_matches, derive_tool_schema, sandbox_settings


def name_and_schema(
    source_code: str,
    json_schema: dict[str, object] | None,
    description: str | None,
    source_type: str | None = None,
    *,
    runs_source: bool = True,
) -> tuple[str, dict[str, object], str | None]:
    """A client-supplied json_schema wins (Letta's rule) if it matches the source's
    function; otherwise derive from source. `runs_source` is False for tools the server
    implements itself (an agent file's built-ins), whose source is never run."""
    if json_schema is not None:
        name = json_schema.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput("json_schema must have a non-empty string 'name'")
        if runs_source and source_type in (None, "python"):
            check_schema_matches(source_code, json_schema)
        schema_description = json_schema.get("description")
        if description is None and isinstance(schema_description, str):
            description = schema_description
        return name, json_schema, description
    derived = derive_tool_schema(source_code)
    return derived.name, derived.json_schema, description or derived.description


def _check_sandbox_settings(metadata: dict[str, object] | None) -> None:
    settings = sandbox_settings(metadata)
    if isinstance(settings, str):
        raise InvalidInput(settings)


class ToolService:
    def __init__(self, env: Env) -> None:
        self._env = env

    def _build(self, request: ToolCreate, *, tool_id: str, created_us: int) -> Tool:
        name, schema, description = name_and_schema(
            request.source_code, request.json_schema, request.description, request.source_type
        )
        _check_sandbox_settings(request.metadata_)
        fields = request.model_dump(
            exclude_none=True, exclude={"json_schema", "description", "source_type"}
        )
        return Tool(
            **fields,
            id=tool_id,
            name=name,
            description=description,
            json_schema=schema,
            source_type=request.source_type or "python",
            tool_type="custom",
            created_at=datetime_from_us(created_us),
            updated_at=datetime_from_us(self._env.clock.now_us()),
        )

    async def create(self, request: ToolCreate) -> Tool:
        now = self._env.clock.now_us()
        tool = self._build(request, tool_id=self._env.entropy.new_id(TOOL_PREFIX), created_us=now)
        if await self._env.store.get_tools_by_name([tool.name]):
            raise Conflict(f"Tool with name '{tool.name}' already exists")
        await self._env.store.insert_tool(tool)
        return tool

    async def upsert(self, request: ToolCreate) -> Tool:
        now = self._env.clock.now_us()
        tool = self._build(request, tool_id=self._env.entropy.new_id(TOOL_PREFIX), created_us=now)
        [stored] = await self._env.store.upsert_tools([tool])
        return stored

    async def retrieve(self, tool_id: str) -> Tool:
        tool = await self._env.store.get_tool(tool_id)
        if tool is None:
            raise NotFound(f"Tool {tool_id} not found")
        return tool

    async def update(self, tool_id: str, request: ToolUpdate) -> Tool:
        tool = await self.retrieve(tool_id)
        changes = request.model_dump(exclude_unset=True)
        changes = {key: value for key, value in changes.items() if value is not None}
        if "source_code" in changes or "json_schema" in changes:
            if tool.tool_type != "custom":
                raise InvalidInput(f"Tool '{tool.name}' is built in; its code cannot change")
            name, schema, description = name_and_schema(
                changes.get("source_code", tool.source_code or ""),
                changes.get("json_schema"),
                changes.get("description"),
                changes.get("source_type", tool.source_type),
            )
            if name != tool.name and await self._env.store.get_tools_by_name([name]):
                raise Conflict(f"Tool with name '{name}' already exists")
            changes.update(name=name, json_schema=schema)
            if description is not None:
                changes["description"] = description
        if "metadata_" in changes:
            _check_sandbox_settings(changes["metadata_"])
        changes["updated_at"] = datetime_from_us(self._env.clock.now_us())
        updated = Tool.model_validate({**tool.model_dump(), **changes})
        await self._env.store.update_tool(updated)
        return updated

    async def delete(self, tool_id: str) -> None:
        if not await self._env.store.delete_tool(tool_id):
            raise NotFound(f"Tool {tool_id} not found")

    async def list_tools(self, query: ToolQuery, page: Page) -> list[Tool]:
        return await self._env.store.list_tools(query, page)

    async def add_base_tools(self) -> list[Tool]:
        """Upserts the built-in tools (Letta's base tools and Kelpie's working-memory tools);
        their ids stay stable across calls and restarts."""
        now = datetime_from_us(self._env.clock.now_us())
        tools = [
            Tool(
                id=self._env.entropy.new_id(TOOL_PREFIX),
                name=spec.name,
                description=spec.description,
                tool_type=spec.tool_type,
                json_schema=spec.json_schema,
                source_type="python",
                created_at=now,
                updated_at=now,
            )
            for spec in BUILTIN_TOOLS
        ]
        return await self._env.store.upsert_tools(tools)

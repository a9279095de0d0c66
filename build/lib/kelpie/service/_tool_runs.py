"""Running a custom tool outside a turn: `agents.tools.run` (with the agent's state and
secrets; the block edits it makes are saved and every agent sharing the block sees them)
and `POST /v1/tools/run` (a function from source, nothing stored)."""

from collections.abc import Mapping
from typing import Any, Final

from kelpie.env import Env
from kelpie.errors import InvalidInput, NotFound
from kelpie.sandbox import ToolJobResult
from kelpie.schemas import (
    AgentState,
    Tool,
    ToolExecutionResult,
    ToolRunFromSource,
    datetime_from_us,
)
from kelpie.service._agents import AgentService
from kelpie.storage import BlockChange
from kelpie.tools import (
    CustomToolRunner,
    agent_state_json,
    changed_values,
    derive_tool_schema,
    function_signature,
)

# A run from source is no stored tool; its record needs an id all the same.
UNSTORED_TOOL_ID: Final = "tool-00000000-0000-4000-8000-000000000000"


def _failed(text: str) -> ToolExecutionResult:
    return ToolExecutionResult(status="error", func_return=text, stderr=[text])


def _execution_result(result: ToolJobResult) -> ToolExecutionResult:
    """Letta's shape: an error's text is both the return and the last line of stderr."""
    stdout = [result.stdout] if result.stdout else []
    stderr = [result.stderr] if result.stderr else []
    if result.status == "error":
        text = result.error or "Tool failed"
        return ToolExecutionResult(
            status="error", func_return=text, stdout=stdout, stderr=[*stderr, text]
        )
    return ToolExecutionResult(
        status="success", func_return=result.func_return, stdout=stdout, stderr=stderr
    )


class ToolRunService:
    def __init__(self, env: Env, agents: AgentService) -> None:
        self._env = env
        self._agents = agents
        self._runner = CustomToolRunner(env.sandbox, timeout_s_default=env.config.tool_timeout_s)

    async def run_for_agent(
        self, agent_id: str, tool_name: str, args: Mapping[str, Any]
    ) -> ToolExecutionResult:
        agent = await self._agents.retrieve(
            agent_id, ("agent.blocks", "agent.tools", "agent.secrets")
        )
        tool = next((tool for tool in agent.tools if tool.name == tool_name), None)
        if tool is None:
            found = await self._env.store.get_tools_by_name([tool_name])
            tool = found[0] if found else None
        if tool is None:
            raise NotFound(f"Tool '{tool_name}' not found")
        if tool.tool_type != "custom":
            raise InvalidInput(
                f"Tool '{tool_name}' is a {tool.tool_type} tool: this route runs custom tools;"
                " built-in tools run in an agent's turn"
            )
        state = agent_state_json(agent, agent.blocks)
        secrets = {secret.key: secret.value or "" for secret in agent.secrets}
        workspaces = self._env.sandbox.workspaces
        workspace = agent_id if workspaces.exists(agent_id) else None
        job = self._runner.job(tool, args, secrets, state, workspace=workspace)
        if isinstance(job, str):
            return _failed(job)
        result = await self._env.sandbox.run(job)
        if result.status == "success" and result.agent_state is not None:
            changed = changed_values(state, result.agent_state)
            if isinstance(changed, str):
                return _failed(changed)
            await self._save_blocks(agent, changed)
        return _execution_result(result)

    async def run_from_source(self, request: ToolRunFromSource) -> ToolExecutionResult:
        name = request.name or (request.json_schema or {}).get("name")
        if not isinstance(name, str) or not name:
            name = derive_tool_schema(request.source_code).name
        if function_signature(request.source_code, name) is None:
            raise InvalidInput(f"source_code defines no top-level function named '{name}'")
        now = datetime_from_us(self._env.clock.now_us())
        tool = Tool(
            id=UNSTORED_TOOL_ID,
            name=name,
            source_code=request.source_code,
            source_type=request.source_type or "python",
            pip_requirements=request.pip_requirements,
            created_at=now,
            updated_at=now,
        )
        job = self._runner.job(tool, request.args, request.env_vars or {}, None)
        if isinstance(job, str):
            return _failed(job)
        result = await self._env.sandbox.run(job)
        return _execution_result(result)

    async def _save_blocks(self, agent: AgentState, changed: Mapping[str, str]) -> None:
        now = datetime_from_us(self._env.clock.now_us())
        for block in agent.blocks:
            if block.label not in changed:
                continue
            updated = block.model_copy(update={"value": changed[block.label], "updated_at": now})
            await self._env.store.update_block(
                updated, change=BlockChange(source="api", agent_id=agent.id)
            )
            await self._agents.prompts.recompile_agents_of_block(block.id)

"""Custom tools: Python source a user stored, run in the sandbox with Letta's semantics.

The function is called with the model's arguments; a parameter named `agent_state`
receives the agent's state, and the block values the function changed through it are
applied to the session like any memory tool's edit (checked against read-only blocks and
limits), so they commit with the step. The agent's secrets are the function's environment.
"""

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from kelpie.sandbox import Sandbox, SandboxLimits, ToolJob, ToolJobResult
from kelpie.schemas import AgentState, Block, Tool, limit_error
from kelpie.tools._memory_edit import READ_ONLY_ERROR, MemoryEdit
from kelpie.tools._returned import ToolReturn
from kelpie.tools._sandbox_settings import sandbox_settings
from kelpie.tools._schema import function_signature
from kelpie.tools._session import ToolSession

PYTHON_SOURCE_TYPES: Final = frozenset({None, "python"})


class CustomToolRunner:
    def __init__(self, sandbox: Sandbox, *, timeout_s_default: float) -> None:
        self._sandbox = sandbox
        self._timeout_s_default = timeout_s_default

    def runs_concurrently(self, tool: Tool) -> bool:
        """A function that edits the agent's state must see the edits made before it."""
        signature = function_signature(tool.source_code or "", tool.name)
        return signature is not None and not signature.takes_agent_state

    async def run(
        self, session: ToolSession, tool: Tool, arguments: dict[str, Any], call_id: str
    ) -> ToolReturn:
        if tool.source_type not in PYTHON_SOURCE_TYPES:
            return ToolReturn(
                f"Tool '{tool.name}' is written in {tool.source_type}; Kelpie runs Python tools",
                ok=False,
            )
        # A custom tool works in the agent's workspace once there is one (code or an upload
        # made it); until then it needs none, and takes a warm worker.
        agent_id = session.agent.id
        workspace = agent_id if self._sandbox.workspaces.exists(agent_id) else None
        job = self.job(
            tool, arguments, session.environment, session_state(session), workspace=workspace
        )
        if isinstance(job, str):
            return ToolReturn(job, ok=False)
        result = await self._sandbox.run(job)
        if result.status == "success" and result.agent_state is not None:
            problem = _apply_state(session, result.agent_state, call_id)
            if problem is not None:
                return ToolReturn(problem, ok=False, stdout=_lines(result.stdout))
        return tool_return(result)

    def job(
        self,
        tool: Tool,
        arguments: Mapping[str, Any],
        environment: Mapping[str, str],
        agent_state: Mapping[str, Any] | None,
        *,
        workspace: str | None = None,
    ) -> ToolJob | str:
        """The sandbox job for a call, or the error text when the tool cannot be run."""
        signature = function_signature(tool.source_code or "", tool.name)
        if signature is None:
            return f"Tool '{tool.name}' has no function named {tool.name} in its source code"
        settings = sandbox_settings(tool.metadata_)
        if isinstance(settings, str):
            return settings
        timeout_s = settings.timeout_s or self._timeout_s_default
        requirements = tuple(
            f"{r.name}=={r.version}" if r.version else r.name for r in tool.pip_requirements or []
        )
        return ToolJob(
            source_code=tool.source_code or "",
            function_name=signature.name,
            arguments=dict(arguments),
            environment=dict(environment),
            agent_state=agent_state if signature.takes_agent_state else None,
            pip_requirements=requirements,
            network=settings.network,
            workspace=workspace,
            limits=SandboxLimits(timeout_s=timeout_s),
        )


def session_state(session: ToolSession) -> dict[str, Any]:
    """The agent's state with the blocks as this step has them."""
    return agent_state_json(session.agent, session.blocks.values())


def agent_state_json(agent: AgentState, blocks: Iterable[Block]) -> dict[str, Any]:
    """The agent's state as a sandboxed function sees it: Letta's AgentState, the parts a
    tool reads."""
    return {
        "id": agent.id,
        "name": agent.name,
        "description": agent.description,
        "tags": list(agent.tags),
        "metadata": dict(agent.metadata or {}),
        "agent_type": agent.agent_type,
        "memory": {
            "blocks": [
                {
                    "id": block.id,
                    "label": block.label,
                    "value": block.value,
                    "limit": block.limit,
                    "description": block.description,
                    "read_only": block.read_only,
                }
                for block in blocks
            ]
        },
    }


def changed_values(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, str] | str:
    """Block label → new value for every block the function changed, or the error text if
    a change is not allowed (a read-only block, a value over its limit, not text)."""
    old = {block["label"]: block for block in before["memory"]["blocks"]}
    changed: dict[str, str] = {}
    for block in (after.get("memory") or {}).get("blocks") or []:
        label = block.get("label") if isinstance(block, dict) else None
        if not isinstance(label, str) or label not in old:
            continue
        if block.get("value") == old[label]["value"]:
            continue
        value = block.get("value")
        if not isinstance(value, str):
            return f"Block '{label}' must hold text, not {type(value).__name__}"
        if old[label]["read_only"]:
            return READ_ONLY_ERROR
        if len(value) > old[label]["limit"]:
            return limit_error(old[label]["limit"], len(value))
        changed[label] = value
    return changed


def _apply_state(session: ToolSession, after: Mapping[str, Any], call_id: str) -> str | None:
    changed = changed_values(session_state(session), after)
    if isinstance(changed, str):
        return changed
    if changed:
        session.apply(MemoryEdit(returned=None, changed=changed), call_id)
    return None


def return_text(value: object) -> str | None:
    """Letta's text for a function's return: strings as they are, other JSON as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def tool_return(result: ToolJobResult) -> ToolReturn:
    stderr = _lines(result.stderr)
    if result.status == "error":
        error = result.error or "Tool failed"
        return ToolReturn(error, ok=False, stdout=_lines(result.stdout), stderr=[*stderr, error])
    return ToolReturn(
        return_text(result.func_return),
        stdout=_lines(result.stdout),
        stderr=stderr,
        value=result.func_return,
    )


def _lines(text: str) -> list[str]:
    """Letta's stdout / stderr lists: what the call printed, as one entry."""
    return [text] if text else []

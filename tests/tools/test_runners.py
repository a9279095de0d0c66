"""The tool runner seam: which runner a tool gets, which calls may run side by side, the
sandbox job a custom tool call becomes, and how a function's agent_state edits are
checked before they apply."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kelpie.env import SystemClock
from kelpie.obs import Metrics
from kelpie.sandbox import (
    HostCalls,
    InterpreterOff,
    SessionsOff,
    ToolJob,
    ToolJobResult,
    Workspaces,
)
from kelpie.schemas import PipRequirement, Tool, ToolType
from kelpie.tools import (
    CustomToolRunner,
    SandboxSettings,
    ToolRegistry,
    ToolRunner,
    UnavailableRunner,
    changed_values,
    function_signature,
    sandbox_settings,
    tool_return,
)
from kelpie.tools._run_builtin import MemoryToolRunner

NOW = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
PLAIN = textwrap.dedent(
    '''
    def roll(sides: int) -> str:
        """Roll.

        Args:
            sides (int): Faces.
        """
        return str(sides)
    '''
)
STATEFUL = textwrap.dedent(
    '''
    def note(text: str, agent_state: "AgentState") -> str:
        """Note.

        Args:
            text (str): What to note.
        """
        return text
    '''
)


class RecordingSandbox:
    """Answers every job with `result` and keeps the jobs it was given."""

    def __init__(self, result: ToolJobResult | None = None) -> None:
        self.jobs: list[ToolJob] = []
        self._result = result or ToolJobResult(status="success", func_return="ok")

    @property
    def unavailable_reason(self) -> str | None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def workspaces(self) -> Workspaces:
        return Workspaces(Path("/nonexistent"))

    @property
    def sessions(self) -> SessionsOff:
        return SessionsOff("not in these tests")

    @property
    def interpreter(self) -> InterpreterOff:
        return InterpreterOff("not in these tests")

    async def run(self, job: ToolJob, calls: HostCalls | None = None) -> ToolJobResult:
        self.jobs.append(job)
        return self._result


def _tool(name: str, source: str, **fields: Any) -> Tool:
    return Tool(
        id="tool-00000000-0000-4000-8000-000000000001",
        name=name,
        source_code=source,
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


def _state(*blocks: dict[str, Any]) -> dict[str, Any]:
    """The JSON form `agent_state_json` makes, written out: what the sandbox receives."""
    return {
        "id": "agent-1",
        "name": "a",
        "description": None,
        "tags": [],
        "metadata": {},
        "agent_type": "letta_v1_agent",
        "memory": {"blocks": list(blocks)},
    }


def _block(label: str, value: str, *, limit: int = 100, read_only: bool = False) -> dict[str, Any]:
    return {
        "id": f"block-{label}",
        "label": label,
        "value": value,
        "limit": limit,
        "description": None,
        "read_only": read_only,
    }


class TestRegistry:
    def _registry(self) -> tuple[ToolRegistry, CustomToolRunner]:
        custom = CustomToolRunner(RecordingSandbox(), timeout_s_default=7.0)
        memory = MemoryToolRunner()
        by_name = {name: memory for name in memory.names}
        mcp = UnavailableRunner("no MCP")
        by_type: dict[ToolType, ToolRunner] = {"custom": custom, "external_mcp": mcp}
        return ToolRegistry(by_name, by_type, clock=SystemClock(), metrics=Metrics()), custom

    def test_built_in_tools_are_found_by_name_and_custom_ones_by_type(self) -> None:
        registry, custom = self._registry()
        memory_tool = _tool("memory_insert", "", tool_type="letta_core")
        assert isinstance(registry.runner_for(memory_tool), MemoryToolRunner)
        assert registry.runner_for(_tool("roll", PLAIN)) is custom

    def test_a_custom_tool_named_like_a_built_in_one_still_runs_in_the_sandbox(self) -> None:
        registry, custom = self._registry()
        assert registry.runner_for(_tool("memory_insert", PLAIN)) is custom

    def test_a_type_without_a_runner_has_none(self) -> None:
        registry, _ = self._registry()
        assert registry.runner_for(_tool("x", "", tool_type="external_composio")) is None

    def test_only_stateless_sandboxed_calls_run_side_by_side(self) -> None:
        registry, _ = self._registry()
        assert registry.runs_concurrently(_tool("roll", PLAIN))
        assert not registry.runs_concurrently(_tool("note", STATEFUL))
        assert not registry.runs_concurrently(_tool("memory_insert", "", tool_type="letta_core"))
        assert not registry.runs_concurrently(None)


class TestCustomToolJobs:
    def test_a_call_becomes_a_job_with_its_arguments_secrets_and_requirements(self) -> None:
        runner = CustomToolRunner(RecordingSandbox(), timeout_s_default=7.0)
        tool = _tool(
            "roll",
            PLAIN,
            pip_requirements=[
                PipRequirement(name="six", version="1.16.0"),
                PipRequirement(name="attrs"),
            ],
        )

        job = runner.job(tool, {"sides": 6}, {"TOKEN": "t"}, _state())

        assert isinstance(job, ToolJob)
        assert (job.function_name, dict(job.arguments)) == ("roll", {"sides": 6})
        assert dict(job.environment) == {"TOKEN": "t"}
        assert job.pip_requirements == ("six==1.16.0", "attrs")
        assert job.limits.timeout_s == 7.0
        assert job.network is False
        # The function does not take agent_state: it is not sent.
        assert job.agent_state is None

    def test_agent_state_goes_only_to_functions_that_take_it(self) -> None:
        runner = CustomToolRunner(RecordingSandbox(), timeout_s_default=7.0)
        job = runner.job(_tool("note", STATEFUL), {"text": "x"}, {}, _state(_block("human", "hi")))
        assert isinstance(job, ToolJob)
        assert job.agent_state is not None
        assert job.agent_state["memory"]["blocks"][0]["value"] == "hi"

    def test_sandbox_settings_come_from_metadata(self) -> None:
        runner = CustomToolRunner(RecordingSandbox(), timeout_s_default=7.0)
        tool = _tool("roll", PLAIN, metadata_={"sandbox": {"timeout_s": 2.5, "network": True}})
        job = runner.job(tool, {}, {}, None)
        assert isinstance(job, ToolJob)
        assert (job.limits.timeout_s, job.network) == (2.5, True)

    def test_a_tool_whose_source_lacks_its_function_cannot_run(self) -> None:
        runner = CustomToolRunner(RecordingSandbox(), timeout_s_default=7.0)
        problem = runner.job(_tool("other", PLAIN), {}, {}, None)
        assert problem == "Tool 'other' has no function named other in its source code"


class TestResults:
    def test_a_failed_job_is_an_error_return_naming_what_happened(self) -> None:
        result = ToolJobResult(
            status="error", error="Tool timed out after 2.0 s", stdout="partial\n", stderr=""
        )
        returned = tool_return(result)
        assert (returned.returned, returned.ok) == ("Tool timed out after 2.0 s", False)
        assert returned.stdout == ["partial\n"]
        assert returned.stderr == ["Tool timed out after 2.0 s"]

    @pytest.mark.parametrize(
        ("value", "text"),
        [("plain", "plain"), (None, None), ({"a": [1, "é"]}, '{"a": [1, "é"]}'), (3, "3")],
    )
    def test_a_return_value_is_text_or_json(self, value: object, text: str | None) -> None:
        assert tool_return(ToolJobResult(status="success", func_return=value)).returned == text


class TestAgentStateEdits:
    def test_changed_blocks_are_found(self) -> None:
        before = _state(_block("human", "a"), _block("persona", "p"))
        after = _state(_block("human", "b"), _block("persona", "p"))
        assert changed_values(before, after) == {"human": "b"}

    def test_a_read_only_block_cannot_change(self) -> None:
        before = _state(_block("human", "a", read_only=True))
        after = _state(_block("human", "b", read_only=True))
        assert (
            changed_values(before, after) == "Error This block is read-only and cannot be edited."
        )

    def test_a_value_over_the_limit_is_refused(self) -> None:
        before = _state(_block("human", "a", limit=3))
        after = _state(_block("human", "abcd", limit=3))
        assert changed_values(before, after) == (
            "Edit failed: Exceeds 3 character limit (requested 4)"
        )

    def test_unknown_labels_and_garbage_are_ignored(self) -> None:
        before = _state(_block("human", "a"))
        after: dict[str, Any] = {"memory": {"blocks": [_block("ghost", "x"), "junk", {"value": 1}]}}
        assert changed_values(before, after) == {}

    def test_a_value_that_is_not_text_is_refused(self) -> None:
        before = _state(_block("human", "a"))
        after = _state({**_block("human", "a"), "value": 5})
        assert changed_values(before, after) == "Block 'human' must hold text, not int"


class TestSignaturesAndSettings:
    def test_the_signature_names_the_function_and_its_parameters(self) -> None:
        signature = function_signature(STATEFUL, "note")
        assert signature is not None
        assert signature.takes_agent_state
        assert signature.parameters == frozenset({"text"})
        assert function_signature(STATEFUL, "missing") is None
        assert function_signature("def broken(:", "broken") is None

    @pytest.mark.parametrize(
        ("metadata", "expected"),
        [
            (None, SandboxSettings()),
            ({}, SandboxSettings()),
            ({"sandbox": {"timeout_s": 3}}, SandboxSettings(3.0, False)),
            ({"sandbox": {"network": True}}, SandboxSettings(None, True)),
        ],
    )
    def test_good_settings(
        self, metadata: dict[str, Any] | None, expected: SandboxSettings
    ) -> None:
        assert sandbox_settings(metadata) == expected

    @pytest.mark.parametrize(
        "raw", [{"timeout_s": 0}, {"timeout_s": True}, {"timeout_s": 10_000}, {"network": 1}, []]
    )
    def test_bad_settings_say_what_is_wrong(self, raw: object) -> None:
        problem = sandbox_settings({"sandbox": raw})
        assert isinstance(problem, str)
        assert problem.startswith("metadata_.sandbox")

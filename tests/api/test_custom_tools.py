"""Custom tools run (letta-api.md §3.8): a tool created from Python source is called by the
model, runs in the process sandbox with the model's arguments, and its return, stdout and
stderr reach the history; `agent_state` edits commit with the step; the agent's secrets are
its environment; pip requirements install; timeouts, crashes and exceptions are error
returns and the turn goes on; `agents.tools.run` and `POST /v1/tools/run` run a tool now."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from typing import Any

import httpx
import pytest
from letta_client import BadRequestError, Letta

from ._support import (
    ScriptedLlm,
    calling,
    model_messages,
    new_agent,
    reply,
    system_prompt,
    tool_call,
    unique,
)

PIP_PACKAGE = "six==1.16.0"


def _source(body: str, *, name: str, params: str = "", doc_args: str = "") -> str:
    """A tool's source: `def name(params)` with a Google docstring and `body`."""
    args = f"\n\n    Args:\n{textwrap.indent(doc_args, ' ' * 8)}" if doc_args else ""
    return (
        f'def {name}({params}):\n    """Does what the test needs.{args}\n    """\n'
        + textwrap.indent(textwrap.dedent(body).strip(), "    ")
        + "\n"
    )


def _tool(client: Letta, body: str, *, params: str = "", doc_args: str = "", **extra: Any) -> Any:
    name = unique("tool").replace("-", "_")
    source = _source(body, name=name, params=params, doc_args=doc_args)
    if "metadata" in extra:
        # The SDK has no parameter for Letta's `metadata_`, where Kelpie reads sandbox settings.
        extra["extra_body"] = {"metadata_": extra.pop("metadata")}
    return client.tools.create(source_code=source, **extra)


def _agent_with(client: Letta, *tools: Any, **extra: Any) -> Any:
    agent = new_agent(client, include_base_tools=False, tool_ids=[t.id for t in tools])
    if extra:
        client.agents.update(agent.id, **extra)
    return agent


def _returns(response: Any) -> list[Any]:
    return [m for m in response.messages if m.message_type == "tool_return_message"]


def _send(client: Letta, agent_id: str, text: str = "Go") -> Any:
    return client.agents.messages.create(agent_id, messages=[{"role": "user", "content": text}])


class TestCalledByTheModel:
    def test_the_return_and_what_it_printed_reach_the_history(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        tool = _tool(
            client,
            """
            print("rolling", sides)
            return f"rolled {sides}"
            """,
            params="sides: int",
            doc_args="sides (int): Faces of the die.",
        )
        agent = _agent_with(client, tool)
        script.enqueue(
            calling(tool_call(tool.name, {"sides": 6}, call_id="call_roll")), reply("A six.")
        )

        response = _send(client, agent.id)

        [returned] = _returns(response)
        assert returned.status == "success"
        assert returned.tool_return == "rolled 6"
        assert returned.tool_call_id == "call_roll"
        assert returned.stdout == ["rolling 6\n"]
        assert response.messages[-1].content == "A six."
        history = list(client.agents.messages.list(agent.id, order="asc"))
        stored = [m for m in history if m.message_type == "tool_return_message"]
        assert [m.tool_return for m in stored] == ["rolled 6"]
        assert stored[0].stdout == ["rolling 6\n"]
        # The model saw the packaged return.
        tool_message = model_messages(script.requests()[1])[-1]
        assert json.loads(str(tool_message["content"]))["message"] == "rolled 6"

    def test_a_structured_return_is_json(self, client: Letta, script: ScriptedLlm) -> None:
        tool = _tool(client, 'return {"n": 3, "items": ["a", "b"]}')
        agent = _agent_with(client, tool)
        script.enqueue(calling(tool_call(tool.name, {})), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert json.loads(returned.tool_return) == {"n": 3, "items": ["a", "b"]}

    def test_an_exception_is_lettas_error_return_and_the_turn_goes_on(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        tool = _tool(client, 'raise ValueError("the die fell off the table")')
        agent = _agent_with(client, tool)
        script.enqueue(calling(tool_call(tool.name, {})), reply("Sorry."))

        response = _send(client, agent.id)

        [returned] = _returns(response)
        assert returned.status == "error"
        assert returned.tool_return == (
            f"Error executing function {tool.name}: ValueError: the die fell off the table"
        )
        assert any("Traceback" in line for line in returned.stderr or [])
        assert response.messages[-1].content == "Sorry."
        assert response.stop_reason.stop_reason == "end_turn"

    def test_a_timeout_is_an_error_return_and_the_turn_goes_on(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        tool = _tool(
            client,
            """
            while True:
                pass
            """,
            metadata={"sandbox": {"timeout_s": 1}},
        )
        agent = _agent_with(client, tool)
        script.enqueue(calling(tool_call(tool.name, {})), reply("It took too long."))

        started = time.monotonic()
        response = _send(client, agent.id)

        [returned] = _returns(response)
        assert returned.status == "error"
        assert "timed out" in (returned.tool_return or "").lower()
        assert response.messages[-1].content == "It took too long."
        assert time.monotonic() - started < 30

    def test_a_crash_is_an_error_return(self, client: Letta, script: ScriptedLlm) -> None:
        tool = _tool(
            client,
            """
            import os, signal
            os.kill(os.getpid(), signal.SIGKILL)
            """,
        )
        agent = _agent_with(client, tool)
        script.enqueue(calling(tool_call(tool.name, {})), reply("It crashed."))

        response = _send(client, agent.id)

        [returned] = _returns(response)
        assert returned.status == "error"
        assert returned.tool_return
        assert response.messages[-1].content == "It crashed."

    def test_the_return_is_cut_at_its_char_limit(self, client: Letta, script: ScriptedLlm) -> None:
        tool = _tool(client, 'return "x" * 500', return_char_limit=100)
        agent = _agent_with(client, tool)
        script.enqueue(calling(tool_call(tool.name, {})), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert returned.tool_return.startswith("x" * 100 + "... [NOTE: function output was")
        assert "500 > 100" in returned.tool_return

    def test_secrets_are_the_tools_environment(self, client: Letta, script: ScriptedLlm) -> None:
        tool = _tool(
            client,
            """
            import os
            return os.environ.get("WEATHER_TOKEN", "missing")
            """,
        )
        agent = _agent_with(client, tool, secrets={"WEATHER_TOKEN": "tok-7f3a"})
        script.enqueue(calling(tool_call(tool.name, {})), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert returned.tool_return == "tok-7f3a"

    def test_the_servers_own_environment_is_not_the_tools(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        tool = _tool(
            client,
            """
            import os
            return sorted(k for k in os.environ if "KEY" in k or "OPENAI" in k)
            """,
        )
        agent = _agent_with(client, tool)
        script.enqueue(calling(tool_call(tool.name, {})), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert json.loads(returned.tool_return) == []

    def test_agent_state_edits_commit_with_the_step(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        tool = _tool(
            client,
            """
            human = agent_state.memory.get_block("human").value
            agent_state.memory.update_block_value("human", human + "\\nLikes dice.")
            return "noted"
            """,
            params="agent_state: 'AgentState'",
        )
        agent = new_agent(
            client,
            include_base_tools=False,
            tool_ids=[tool.id],
            memory_blocks=[{"label": "human", "value": "Name: Sam"}],
        )
        script.enqueue(calling(tool_call(tool.name, {}, call_id="call_note")), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert returned.tool_return == "noted"
        block = client.agents.blocks.retrieve("human", agent_id=agent.id)
        assert block.value == "Name: Sam\nLikes dice."
        # The next request's prompt shows the edit.
        script.enqueue(reply("hi"))
        _send(client, agent.id, "Again")
        assert "Likes dice." in system_prompt(script.requests()[-1])

    def test_an_agent_state_edit_over_the_limit_changes_nothing(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        tool = _tool(
            client,
            """
            agent_state.memory.update_block_value("human", "y" * 50)
            return "done"
            """,
            params="agent_state: 'AgentState'",
        )
        agent = new_agent(
            client,
            include_base_tools=False,
            tool_ids=[tool.id],
            memory_blocks=[{"label": "human", "value": "short", "limit": 10}],
        )
        script.enqueue(calling(tool_call(tool.name, {})), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert returned.status == "error"
        assert "10 character limit" in (returned.tool_return or "")
        assert client.agents.blocks.retrieve("human", agent_id=agent.id).value == "short"

    def test_a_pip_requirement_is_installed_and_importable(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        name, version = PIP_PACKAGE.split("==")
        tool = _tool(
            client,
            f"""
            import {name}
            return {name}.__version__
            """,
            pip_requirements=[{"name": name, "version": version}],
            metadata={"sandbox": {"timeout_s": 120}},
        )
        agent = _agent_with(client, tool)
        script.enqueue(calling(tool_call(tool.name, {})), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert (returned.status, returned.tool_return) == ("success", version)

    def test_other_agents_are_served_while_a_tool_runs(
        self, client: Letta, script: ScriptedLlm, http: httpx.Client
    ) -> None:
        slow = _tool(client, "import time\ntime.sleep(3)\nreturn 'slept'")
        busy = _agent_with(client, slow)
        idle = new_agent(client, include_base_tools=False)
        script.enqueue(calling(tool_call(slow.name, {})), reply("done"))
        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(_send(client, busy.id)))
        worker.start()
        time.sleep(0.5)

        started = time.monotonic()
        health = http.get("/v1/health")
        retrieved = client.agents.retrieve(idle.id)
        served_in = time.monotonic() - started
        worker.join(timeout=30)

        assert health.status_code == 200
        assert retrieved.id == idle.id
        assert served_in < 1.0
        [returned] = _returns(results[0])
        assert returned.tool_return == "slept"

    def test_parallel_calls_return_in_call_order(self, client: Letta, script: ScriptedLlm) -> None:
        tool = _tool(
            client,
            """
            import time
            time.sleep(delay)
            return f"slept {delay}"
            """,
            params="delay: float",
            doc_args="delay (float): Seconds to sleep.",
        )
        agent = _agent_with(client, tool)
        script.enqueue(
            calling(
                tool_call(tool.name, {"delay": 0.6}, call_id="call_slow"),
                tool_call(tool.name, {"delay": 0.0}, call_id="call_fast"),
            ),
            reply("ok"),
        )

        returns = _returns(_send(client, agent.id))

        assert [(r.tool_call_id, r.tool_return) for r in returns] == [
            ("call_slow", "slept 0.6"),
            ("call_fast", "slept 0.0"),
        ]


class TestRunNow:
    def test_agents_tools_run_returns_lettas_execution_result(self, client: Letta) -> None:
        tool = _tool(
            client,
            """
            print("hello from the sandbox")
            return count * 2
            """,
            params="count: int",
            doc_args="count (int): A number.",
        )
        agent = _agent_with(client, tool)

        result = client.agents.tools.run(tool.name, agent_id=agent.id, args={"count": 21})

        assert result.status == "success"
        assert result.func_return == 42
        assert result.stdout == ["hello from the sandbox\n"]

    def test_agents_tools_run_saves_agent_state_edits(self, client: Letta) -> None:
        tool = _tool(
            client,
            """
            agent_state.memory.update_block_value("persona", "I roll dice.")
            return agent_state.id
            """,
            params="agent_state: 'AgentState'",
        )
        agent = new_agent(
            client,
            include_base_tools=False,
            tool_ids=[tool.id],
            memory_blocks=[{"label": "persona", "value": "I am new."}],
        )

        result = client.agents.tools.run(tool.name, agent_id=agent.id, args={})

        assert (result.status, result.func_return) == ("success", agent.id)
        assert client.agents.blocks.retrieve("persona", agent_id=agent.id).value == "I roll dice."

    def test_agents_tools_run_reports_an_exception(self, client: Letta) -> None:
        tool = _tool(client, "return 1 / 0")
        agent = _agent_with(client, tool)

        result = client.agents.tools.run(tool.name, agent_id=agent.id, args={})

        assert result.status == "error"
        assert result.func_return == (
            f"Error executing function {tool.name}: ZeroDivisionError: division by zero"
        )

    def test_an_unknown_tool_name_is_404(self, http: httpx.Client, client: Letta) -> None:
        agent = _agent_with(client)
        response = http.post(f"/v1/agents/{agent.id}/tools/no_such_tool/run", json={"args": {}})
        assert response.status_code == 404
        assert "no_such_tool" in response.json()["detail"]

    def test_run_from_source_stores_nothing(self, http: httpx.Client, client: Letta) -> None:
        name = unique("adhoc").replace("-", "_")
        source = _source(
            "import os\nreturn os.environ['GREETING'] + ' ' + who",
            name=name,
            params="who: str",
            doc_args="who (str): Whom to greet.",
        )
        response = http.post(
            "/v1/tools/run",
            json={"source_code": source, "args": {"who": "Sam"}, "env_vars": {"GREETING": "Hi"}},
        )

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "success"
        assert response.json()["func_return"] == "Hi Sam"
        assert list(client.tools.list(name=name)) == []


class TestBadToolsAreRefusedAtCreate:
    @pytest.mark.parametrize(
        ("source", "fragment"),
        [
            ("def broken(:\n    pass\n", "syntax error"),
            ("def plain(x: int):\n    return x\n", "docstring"),
        ],
    )
    def test_source_that_cannot_become_a_tool(
        self, client: Letta, source: str, fragment: str
    ) -> None:
        with pytest.raises(BadRequestError) as caught:
            client.tools.create(source_code=source)
        assert fragment in str(caught.value.body)

    def test_a_schema_naming_another_function(self, client: Letta) -> None:
        source = _source("return 1", name="real_name")
        schema: dict[str, object] = {
            "name": "other_name",
            "description": "x",
            "parameters": {"properties": {}},
        }
        with pytest.raises(BadRequestError) as caught:
            client.tools.create(source_code=source, json_schema=schema)
        assert "other_name" in str(caught.value.body)

    def test_a_schema_with_parameters_the_function_lacks(self, client: Letta) -> None:
        source = _source("return 1", name="no_params")
        schema: dict[str, object] = {
            "name": "no_params",
            "description": "x",
            "parameters": {"type": "object", "properties": {"ghost": {"type": "string"}}},
        }
        with pytest.raises(BadRequestError) as caught:
            client.tools.create(source_code=source, json_schema=schema)
        assert "ghost" in str(caught.value.body)

    @pytest.mark.parametrize(
        "sandbox",
        [{"timeout_s": -1}, {"timeout_s": "soon"}, {"network": "yes"}, {"cpus": 4}, "fast"],
    )
    def test_bad_sandbox_settings(self, client: Letta, sandbox: object) -> None:
        with pytest.raises(BadRequestError) as caught:
            _tool(client, "return 1", metadata={"sandbox": sandbox})
        assert "metadata_.sandbox" in str(caught.value.body)

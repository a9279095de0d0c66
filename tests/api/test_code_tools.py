"""Code that acts (letta-api.md §3.8): `run_code` and `run_code_with_tools` run in Kelpie's
own sandbox. In `run_code_with_tools` the agent's tools are functions of the code; each
call goes back to the server and runs as a direct call would, its memory edits committed
with the step. An agent's workspace is the code's working directory, kept across turns
and restarts, listed and served over REST, and deleted with the agent."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from letta_client import Letta

from ._support import (
    KelpieStarter,
    ScriptedLlm,
    calling,
    new_agent,
    reply,
    tool_call,
    unique,
)


def _custom_tool(client: Letta, body: str, *, params: str = "", doc_args: str = "") -> Any:
    name = unique("tool").replace("-", "_")
    args = f"\n\n    Args:\n{textwrap.indent(doc_args, ' ' * 8)}" if doc_args else ""
    source = (
        f'def {name}({params}):\n    """Does what the test needs.{args}\n    """\n'
        + textwrap.indent(textwrap.dedent(body).strip(), "    ")
        + "\n"
    )
    return client.tools.create(source_code=source)


def _returns(response: Any) -> list[Any]:
    return [m for m in response.messages if m.message_type == "tool_return_message"]


def _run_code(
    client: Letta, script: ScriptedLlm, agent_id: str, code: str, *, tool: str = "run_code"
) -> Any:
    """One turn in which the model runs `code` with `tool`, then answers; the tool return."""
    arguments = {"code": code}
    if tool == "run_code":
        arguments["language"] = "python"
    script.enqueue(calling(tool_call(tool, arguments)), reply("ran"))
    response = client.agents.messages.create(
        agent_id, messages=[{"role": "user", "content": "run it"}]
    )
    [returned] = _returns(response)
    return returned


class TestRunCodeWithTools:
    def test_code_calls_a_memory_tool_and_a_custom_tool_in_a_loop(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        score = _custom_tool(
            client,
            "return {'word': word, 'score': len(word) * 10}",
            params="word: str",
            doc_args="word (str): The word to score.",
        )
        agent = new_agent(
            client,
            include_base_tools=False,
            tools=["run_code_with_tools", "core_memory_append"],
            tool_ids=[score.id],
            memory_blocks=[{"label": "human", "value": "Name: Sam"}],
        )
        code = (
            "best = None\n"
            "for word in ['kelp', 'urchin', 'otter']:\n"
            f"    result = {score.name}(word)\n"
            "    if best is None or result['score'] > best['score']:\n"
            "        best = result\n"
            "    core_memory_append(label='human', content=f'Scored {word}.')\n"
            "print('best', best['word'])\n"
            "best['score']"
        )

        returned = _run_code(client, script, agent.id, code, tool="run_code_with_tools")

        assert returned.status == "success", returned.tool_return
        body = json.loads(returned.tool_return)
        assert body == {
            "status": "success",
            "func_return": 60,
            "stdout": ["best urchin\n"],
            "stderr": [],
        }
        block = client.agents.blocks.retrieve("human", agent_id=agent.id)
        assert block.value == "Name: Sam\nScored kelp.\nScored urchin.\nScored otter."
        # The model saw what the code printed, inside the packaged return.
        assert "best urchin" in returned.tool_return

    def test_a_failing_tool_raises_in_the_code_and_the_turn_goes_on(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(
            client,
            include_base_tools=False,
            tools=["run_code_with_tools", "core_memory_replace"],
            memory_blocks=[{"label": "human", "value": "Name: Sam"}],
        )
        code = (
            "import kelpie_tools\n"
            "try:\n"
            "    core_memory_replace('human', 'not there', 'x')\n"
            "except kelpie_tools.ToolError as error:\n"
            "    print('failed:', error)\n"
        )

        returned = _run_code(client, script, agent.id, code, tool="run_code_with_tools")

        body = json.loads(returned.tool_return)
        assert body["status"] == "success"
        assert body["stdout"][0].startswith("failed: Old content 'not there' not found")

    def test_an_uncaught_exception_is_an_error_return_with_its_traceback(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, include_base_tools=False, tools=["run_code_with_tools"])

        returned = _run_code(
            client, script, agent.id, "x = {}\nx['missing']", tool="run_code_with_tools"
        )

        assert returned.status == "error"
        body = json.loads(returned.tool_return)
        assert body["status"] == "error"
        assert body["func_return"] == "KeyError: 'missing'"
        assert "Traceback" in body["stderr"][0]

    def test_code_cannot_call_tools_the_agent_does_not_have(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        other_tool = _custom_tool(client, "return 'secret of another agent'")
        new_agent(client, include_base_tools=False, tool_ids=[other_tool.id])
        agent = new_agent(client, include_base_tools=False, tools=["run_code_with_tools"])
        code = (
            "import kelpie_tools\n"
            f"print(hasattr(kelpie_tools, '{other_tool.name}'), '{other_tool.name}' in globals())"
        )

        returned = _run_code(client, script, agent.id, code, tool="run_code_with_tools")

        body = json.loads(returned.tool_return)
        assert body["stdout"] == ["False False\n"]
        # A call the code forges on its channel is refused by the server: tests/tools.

    def test_a_per_step_limit_counts_the_calls_code_makes(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(
            client,
            include_base_tools=False,
            tools=["run_code_with_tools", "core_memory_append"],
            memory_blocks=[{"label": "human", "value": "Name: Sam"}],
            tool_rules=[
                {"type": "max_count_per_step", "tool_name": "core_memory_append",
                 "max_count_limit": 2},
            ],
        )  # fmt: skip
        code = (
            "import kelpie_tools\n"
            "for i in range(3):\n"
            "    try:\n"
            "        core_memory_append('human', f'line {i}')\n"
            "    except kelpie_tools.ToolError as error:\n"
            "        print(error)\n"
        )

        returned = _run_code(client, script, agent.id, code, tool="run_code_with_tools")

        body = json.loads(returned.tool_return)
        assert body["stdout"] == ["Tool 'core_memory_append' may be called 2 times per step\n"]
        block = client.agents.blocks.retrieve("human", agent_id=agent.id)
        assert block.value == "Name: Sam\nline 0\nline 1"

    def test_secrets_stay_on_the_host_but_reach_the_custom_tools_code_calls(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        token_tool = _custom_tool(client, "import os\nreturn os.environ.get('WEATHER_TOKEN')")
        agent = new_agent(
            client,
            include_base_tools=False,
            tools=["run_code_with_tools"],
            tool_ids=[token_tool.id],
        )
        client.agents.update(agent.id, secrets={"WEATHER_TOKEN": "tok-7f3a"})
        code = (
            "import os\n"
            "print('in code:', os.environ.get('WEATHER_TOKEN'))\n"
            f"{token_tool.name}() == 'tok-7f3a'"
        )

        returned = _run_code(client, script, agent.id, code, tool="run_code_with_tools")

        body = json.loads(returned.tool_return)
        assert body["stdout"] == ["in code: None\n"]
        assert body["func_return"] is True


class TestRunCode:
    def test_lettas_result_shape(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, include_base_tools=False, tools=["run_code"])

        returned = _run_code(client, script, agent.id, "print('hello')\n6 * 7")

        assert returned.status == "success"
        assert json.loads(returned.tool_return) == {
            "results": [42],
            "logs": {"stdout": ["hello\n"], "stderr": []},
        }

    def test_an_error_carries_name_value_and_traceback(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client, include_base_tools=False, tools=["run_code"])

        returned = _run_code(client, script, agent.id, "1 / 0")

        assert returned.status == "error"
        error = json.loads(returned.tool_return)["error"]
        assert error["name"] == "ZeroDivisionError"
        assert error["value"] == "division by zero"
        assert "Traceback" in error["traceback"]

    def test_another_language_is_refused_clearly(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, include_base_tools=False, tools=["run_code"])
        script.enqueue(
            calling(tool_call("run_code", {"code": "console.log(1)", "language": "js"})),
            reply("ok"),
        )
        response = client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "go"}]
        )
        [returned] = _returns(response)
        assert returned.status == "error"
        assert returned.tool_return == "Kelpie runs Python code; language 'js' is not available"


class TestWorkspace:
    def test_a_file_written_in_one_turn_is_read_in_the_next(
        self, client: Letta, script: ScriptedLlm, http: httpx.Client
    ) -> None:
        agent = new_agent(client, include_base_tools=False, tools=["run_code"])
        _run_code(
            client,
            script,
            agent.id,
            "import os\nos.makedirs('notes', exist_ok=True)\n"
            "open('notes/plan.txt', 'w').write('kelp')",
        )

        returned = _run_code(client, script, agent.id, "open('notes/plan.txt').read()")

        assert json.loads(returned.tool_return)["results"] == ["kelp"]
        listing = http.get(f"/v1/agents/{agent.id}/workspace").json()
        assert [(f["path"], f["size_bytes"]) for f in listing["files"]] == [("notes/plan.txt", 4)]
        assert listing["used_bytes"] == 4
        assert listing["quota_bytes"] == 256 * 1024 * 1024
        download = http.get(f"/v1/agents/{agent.id}/workspace/files/notes/plan.txt")
        assert download.status_code == 200
        assert download.content == b"kelp"

    def test_an_uploaded_file_is_there_for_the_code(
        self, client: Letta, script: ScriptedLlm, http: httpx.Client
    ) -> None:
        agent = new_agent(client, include_base_tools=False, tools=["run_code"])
        uploaded = http.put(
            f"/v1/agents/{agent.id}/workspace/files/data/rows.csv", content=b"a,b\n1,2\n3,4\n"
        )
        assert uploaded.status_code == 200, uploaded.text
        assert uploaded.json()["path"] == "data/rows.csv"

        returned = _run_code(
            client,
            script,
            agent.id,
            "import csv\nsum(int(r['b']) for r in csv.DictReader(open('data/rows.csv')))",
        )

        assert json.loads(returned.tool_return)["results"] == [6]
        deleted = http.delete(f"/v1/agents/{agent.id}/workspace/files/data/rows.csv")
        assert deleted.status_code == 200
        gone = http.get(f"/v1/agents/{agent.id}/workspace/files/data/rows.csv")
        assert gone.status_code == 404
        assert "No file 'data/rows.csv'" in gone.json()["detail"]

    @pytest.mark.parametrize(
        ("path", "status", "detail"),
        [
            ("../escape.txt", 400, "not a relative path inside the workspace"),
            ("a/../../escape.txt", 400, "not a relative path inside the workspace"),
        ],
    )
    def test_a_path_outside_the_workspace_is_refused(
        self, client: Letta, http: httpx.Client, path: str, status: int, detail: str
    ) -> None:
        agent = new_agent(client, include_base_tools=False)
        # httpx would normalise the dots away: send the raw path.
        url = f"/v1/agents/{agent.id}/workspace/files/{path.replace('.', '%2E')}"
        response = http.put(url, content=b"x")
        assert response.status_code == status, response.text
        assert detail in response.json()["detail"]
        assert http.get(f"/v1/agents/{agent.id}/workspace").json()["files"] == []

    def test_custom_tools_work_in_the_workspace_once_there_is_one(
        self, client: Letta, script: ScriptedLlm, http: httpx.Client
    ) -> None:
        reader = _custom_tool(client, "import os\nreturn [os.getcwd(), sorted(os.listdir('.'))]")
        agent = new_agent(client, include_base_tools=False, tool_ids=[reader.id])
        script.enqueue(calling(tool_call(reader.name, {})), reply("ok"))
        [before] = _returns(
            client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "a"}])
        )
        cwd, listing = json.loads(before.tool_return)
        assert cwd == "/tmp"
        assert "input.txt" not in listing

        http.put(f"/v1/agents/{agent.id}/workspace/files/input.txt", content=b"data")
        script.enqueue(calling(tool_call(reader.name, {})), reply("ok"))
        [after] = _returns(
            client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "b"}])
        )
        assert json.loads(after.tool_return) == ["/workspace", ["input.txt"]]
        run = client.agents.tools.run(reader.name, agent_id=agent.id, args={})
        assert run.func_return == ["/workspace", ["input.txt"]]

    def test_an_unknown_agent_is_404_and_a_bad_id_422(self, http: httpx.Client) -> None:
        missing = http.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000/workspace")
        assert missing.status_code == 404
        bad = http.get("/v1/agents/not-an-agent/workspace")
        assert bad.status_code == 422

    def test_deleting_the_agent_deletes_its_workspace(
        self, client: Letta, http: httpx.Client
    ) -> None:
        agent = new_agent(client, include_base_tools=False)
        http.put(f"/v1/agents/{agent.id}/workspace/files/x.txt", content=b"x")
        assert http.get(f"/v1/agents/{agent.id}/workspace").json()["files"]

        client.agents.delete(agent.id)

        # A new agent can never have this id; the directory itself is gone (checked on the
        # server's data dir in the restart test's server).
        assert http.get(f"/v1/agents/{agent.id}/workspace").status_code == 404


def test_the_workspace_survives_a_restart_and_goes_with_the_agent(
    kelpie_launcher: KelpieStarter, script: ScriptedLlm
) -> None:
    base_url = kelpie_launcher.start()
    data_dir = kelpie_launcher.data_dirs[base_url]
    with Letta(base_url=base_url, api_key="sk-test") as client:
        agent = new_agent(client, include_base_tools=False, tools=["run_code"])
        _run_code(client, script, agent.id, "open('kept.txt', 'w').write('across restarts')")
    kelpie_launcher.stop(base_url)

    restarted = kelpie_launcher.start(data_dir=data_dir)
    with Letta(base_url=restarted, api_key="sk-test") as client:
        returned = _run_code(client, script, agent.id, "open('kept.txt').read()")
        assert json.loads(returned.tool_return)["results"] == ["across restarts"]
        workspaces = list(data_dir.glob(f"**/workspaces/{agent.id}"))
        assert len(workspaces) == 1
        client.agents.delete(agent.id)
        assert not workspaces[0].exists()


def _approval(client: Letta, agent_id: str, call_id: str, approve: bool, reason: str = "") -> Any:
    decision: dict[str, Any] = {"type": "approval", "tool_call_id": call_id, "approve": approve}
    if reason:
        decision["reason"] = reason
    message: Any = {"type": "approval", "approvals": [decision]}
    return client.agents.messages.create(agent_id, messages=[message])


class TestAToolThatNeedsApprovalCalledFromCode:
    """It stops the turn for approval as a direct call does; the client sees the call the
    code made. On the reply the code runs again from its start: calls it made before are
    answered as they were (not made twice), the waiting call by the reply."""

    @pytest.fixture
    def guarded(self, client: Letta) -> Any:
        return _custom_tool(
            client, "return f'sent to {to}'", params="to: str", doc_args="to (str): Who."
        )

    def _paused(
        self, client: Letta, script: ScriptedLlm, guarded: Any, code: str
    ) -> tuple[str, Any]:
        agent = new_agent(
            client,
            include_base_tools=False,
            tools=["run_code_with_tools", "core_memory_append"],
            tool_ids=[guarded.id],
            memory_blocks=[{"label": "human", "value": "Name: Sam"}],
            tool_rules=[{"type": "requires_approval", "tool_name": guarded.name}],
        )
        call = tool_call("run_code_with_tools", {"code": code}, call_id="call_code")
        script.enqueue(calling(call))
        response = client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "send it"}]
        )
        assert response.stop_reason.stop_reason == "requires_approval"
        [request] = [m for m in response.messages if m.message_type == "approval_request_message"]
        return agent.id, request

    def _code(self, guarded: Any) -> str:
        return (
            "core_memory_append('human', 'Asked to send.')\n"
            f"answer = {guarded.name}('Ada')\n"
            "print(answer)\n"
            "answer.upper()"
        )

    def test_the_client_is_asked_for_the_call_the_code_made(
        self, client: Letta, script: ScriptedLlm, guarded: Any
    ) -> None:
        agent_id, request = self._paused(client, script, guarded, self._code(guarded))

        assert request.tool_call.name == guarded.name
        assert json.loads(request.tool_call.arguments) == {"to": "Ada"}
        # The calls before it committed with the step.
        assert client.agents.blocks.retrieve("human", agent_id=agent_id).value == (
            "Name: Sam\nAsked to send."
        )
        pending = client.agents.retrieve(agent_id, include=["agent.pending_approval"])
        assert pending.pending_approval is not None
        assert pending.pending_approval.tool_call.tool_call_id == request.tool_call.tool_call_id

    def test_approved_the_code_goes_on_and_nothing_runs_twice(
        self, client: Letta, script: ScriptedLlm, guarded: Any
    ) -> None:
        agent_id, request = self._paused(client, script, guarded, self._code(guarded))
        script.clear()
        script.enqueue(reply("Sent."))

        response = _approval(client, agent_id, request.tool_call.tool_call_id, True)

        [returned] = _returns(response)
        assert returned.tool_call_id == "call_code"
        assert json.loads(returned.tool_return) == {
            "status": "success",
            "func_return": "SENT TO ADA",
            "stdout": ["sent to Ada\n"],
            "stderr": [],
        }
        assert client.agents.blocks.retrieve("human", agent_id=agent_id).value == (
            "Name: Sam\nAsked to send."
        )
        # The model sees its own call and its return; the code's call is not in its history.
        [sent] = script.requests()
        chat = json.dumps(sent["messages"])
        assert "SENT TO ADA" in chat
        assert request.tool_call.tool_call_id not in chat

    def test_a_token_stream_carries_the_request(
        self, client: Letta, script: ScriptedLlm, guarded: Any
    ) -> None:
        agent = new_agent(
            client,
            include_base_tools=False,
            tools=["run_code_with_tools"],
            tool_ids=[guarded.id],
            tool_rules=[{"type": "requires_approval", "tool_name": guarded.name}],
        )
        code = f"{guarded.name}('Ada')"
        script.enqueue(calling(tool_call("run_code_with_tools", {"code": code})))

        chunks = list(
            client.agents.messages.create(
                agent.id,
                messages=[{"role": "user", "content": "send it"}],
                streaming=True,
                stream_tokens=True,
                include_pings=False,
            )
        )

        [request] = [c for c in chunks if c.message_type == "approval_request_message"]
        assert request.tool_call.name == guarded.name
        stop = [c.stop_reason for c in chunks if c.message_type == "stop_reason"]
        assert stop == ["requires_approval"]

    def test_denied_the_code_sees_the_reason_as_a_tool_error(
        self, client: Letta, script: ScriptedLlm, guarded: Any
    ) -> None:
        code = (
            "import kelpie_tools\n"
            "try:\n"
            f"    {guarded.name}('Ada')\n"
            "except kelpie_tools.ToolError as error:\n"
            "    print('not sent:', error)\n"
        )
        agent_id, request = self._paused(client, script, guarded, code)
        script.enqueue(reply("Not sent."))

        response = _approval(client, agent_id, request.tool_call.tool_call_id, False, "not now")

        [returned] = _returns(response)
        assert json.loads(returned.tool_return)["stdout"] == [
            "not sent: Error: request to call tool denied. User reason: not now\n"
        ]

    def test_code_that_calls_differently_when_run_again_fails_instead(
        self, client: Letta, script: ScriptedLlm, guarded: Any
    ) -> None:
        # Each run appends to a file, so the second run's first call differs from the first.
        code = (
            "open('runs.txt', 'a').write('x')\n"
            "core_memory_append('human', f\"run {len(open('runs.txt').read())}\")\n"
            f"{guarded.name}('Ada')\n"
        )
        agent_id, request = self._paused(client, script, guarded, code)
        script.enqueue(reply("It failed."))

        response = _approval(client, agent_id, request.tool_call.tool_call_id, True)

        [returned] = _returns(response)
        assert returned.status == "error"
        assert "must make the same tool calls in the same order" in returned.tool_return
        value = client.agents.blocks.retrieve("human", agent_id=agent_id).value
        assert value == "Name: Sam\nrun 1", "the approved call did not run, nor the new one"


def test_code_waiting_for_approval_goes_on_after_a_restart(
    kelpie_launcher: KelpieStarter, script: ScriptedLlm
) -> None:
    base_url = kelpie_launcher.start()
    data_dir = kelpie_launcher.data_dirs[base_url]
    with Letta(base_url=base_url, api_key="sk-test") as client:
        guarded = _custom_tool(client, "return 'done'")
        agent = new_agent(
            client,
            include_base_tools=False,
            tools=["run_code_with_tools"],
            tool_ids=[guarded.id],
            tool_rules=[{"type": "requires_approval", "tool_name": guarded.name}],
        )
        code = f"rows = [1, 2, 3]\nstatus = {guarded.name}()\nf'{{status}} {{sum(rows)}}'"
        script.enqueue(calling(tool_call("run_code_with_tools", {"code": code})))
        response = client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "go"}]
        )
        assert response.stop_reason.stop_reason == "requires_approval"
    kelpie_launcher.stop(base_url)

    restarted = kelpie_launcher.start(data_dir=data_dir)
    with Letta(base_url=restarted, api_key="sk-test") as client:
        pending = client.agents.retrieve(agent.id, include=["agent.pending_approval"])
        assert pending.pending_approval is not None
        call_id = pending.pending_approval.tool_call.tool_call_id
        assert call_id is not None
        script.enqueue(reply("Done."))
        response = _approval(client, agent.id, call_id, True)
        [returned] = _returns(response)
        assert json.loads(returned.tool_return)["func_return"] == "done 6"


class TestSessions:
    def test_variables_and_imports_carry_over_between_turns(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(
            client, include_base_tools=False, tools=["run_code", "run_code_with_tools"]
        )
        _run_code(client, script, agent.id, "import statistics\nrows = [3, 1, 2]")

        returned = _run_code(
            client, script, agent.id, "statistics.median(rows)", tool="run_code_with_tools"
        )

        assert json.loads(returned.tool_return)["func_return"] == 2

    def test_agents_do_not_share_a_session(self, client: Letta, script: ScriptedLlm) -> None:
        first = new_agent(client, include_base_tools=False, tools=["run_code"])
        second = new_agent(client, include_base_tools=False, tools=["run_code"])
        _run_code(client, script, first.id, "secret = 'first agent only'")

        returned = _run_code(client, script, second.id, "'secret' in globals()")

        assert json.loads(returned.tool_return)["results"] == [False]


def test_a_session_is_paused_when_idle_and_survives_a_restart(
    kelpie_launcher: KelpieStarter, script: ScriptedLlm
) -> None:
    idle = {"KELPIE_CODE_SESSION_IDLE_S": "0.5"}
    base_url = kelpie_launcher.start(idle)
    data_dir = kelpie_launcher.data_dirs[base_url]
    with Letta(base_url=base_url, api_key="sk-test") as client:
        agent = new_agent(client, include_base_tools=False, tools=["run_code"])
        _run_code(client, script, agent.id, "kept = {'rows': list(range(5))}\nopen('f', 'w')")
        images = _wait_for_image(data_dir, agent.id)
        assert images, "the idle session was not checkpointed to disk"
        returned = _run_code(client, script, agent.id, "sum(kept['rows'])")
        assert json.loads(returned.tool_return)["results"] == [10]
    kelpie_launcher.stop(base_url)  # a graceful stop pauses every running session
    assert list(data_dir.glob(f"**/sessions/{agent.id}/image/*"))

    restarted = kelpie_launcher.start(idle, data_dir=data_dir)
    with Letta(base_url=restarted, api_key="sk-test") as client:
        returned = _run_code(client, script, agent.id, "kept['rows'][-1]")
        assert json.loads(returned.tool_return)["results"] == [4]
        client.agents.delete(agent.id)
    assert not list(data_dir.glob(f"**/sessions/{agent.id}"))


def _wait_for_image(data_dir: Path, agent_id: str) -> list[Path]:
    for _ in range(100):
        images = list(data_dir.glob(f"**/sessions/{agent_id}/image/*.img"))
        if images:
            return images
        time.sleep(0.1)
    return []

"""letta-code, the official CLI, runs unmodified against Kelpie (issue 5).

The pinned CLI runs headless (`letta -p ... --output-format json`) against a Kelpie server
whose model is the tests' scripted fake. First run, in a new project: letta-code creates
its agent and a conversation; the model calls letta-code's shell tool, which runs on the
client (an approval round trip), and then answers. Second run, in the same project:
letta-code resumes the agent it remembered and opens a new conversation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Final

import pytest
from letta_client import Letta
from letta_client.types import ToolReturnMessage
from letta_client.types.agents import ApprovalRequestMessage, AssistantMessage

from ._letta_code import INSTALL_TIMEOUT_S, SHELL_TOOL, LettaCode, LettaCodeRun, ScriptedLlm

SHELL_CALL_ID: Final = "call_e2e_shell"
FIRST_ANSWER: Final = "The marker file is written."
SECOND_ANSWER: Final = "Hello again, from the same agent."
# The history of a client-tool turn after the user's message, as Letta lists it
# (letta-api.md §4.6).
CLIENT_TOOL_TURN: Final = [
    "user_message",
    "approval_request_message",
    "approval_response_message",
    "tool_return_message",
    "assistant_message",
]
# Headless runs against a local server take ~1.5 s each; a cold install adds ~35 s.
TEST_TIMEOUT_S: Final = INSTALL_TIMEOUT_S + 60


def when_shell_offered(entry: Mapping[str, object]) -> dict[str, object]:
    """A scripted model answer that only a request offering letta-code's shell tool takes,
    so no other model call the server makes can use it up."""
    return {**entry, "when_tool": SHELL_TOOL}


def succeeded(run: LettaCodeRun) -> dict[str, object]:
    """The run's JSON result, after checking that the CLI reported success."""
    assert run.returncode == 0, run.describe()
    result = run.result()
    assert result.get("type") == "result", run.describe()
    assert result.get("subtype") == "success", run.describe()
    assert result.get("is_error") is False, run.describe()
    return result


def tool_results_sent_to_model(script: ScriptedLlm) -> list[str]:
    """The tool results in the model requests so far: what the model saw of tool runs."""
    results = []
    for request in script.requests():
        messages = request["messages"]
        assert isinstance(messages, list), f"a model request without messages: {request!r}"
        results += [str(message["content"]) for message in messages if message["role"] == "tool"]
    return results


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_letta_code_runs_a_client_tool_then_resumes_its_agent(
    letta_code: LettaCode, client: Letta, script: ScriptedLlm
) -> None:
    marker = f"kelpie-e2e-{uuid.uuid4().hex[:12]}"
    command = f"echo {marker} > marker.txt && cat marker.txt"
    arguments = json.dumps({"cmd": command, "description": "Write the marker file"})
    shell_call = {"id": SHELL_CALL_ID, "name": SHELL_TOOL, "arguments": arguments}
    script.enqueue(
        when_shell_offered({"tool_calls": [shell_call]}),
        when_shell_offered({"content": FIRST_ANSWER}),
    )
    assert list(client.agents.list()) == [], "the server should start without agents"

    first = succeeded(letta_code.run("Write the marker file."))

    assert first["result"] == FIRST_ANSWER
    assert (letta_code.project / "marker.txt").read_text().strip() == marker
    assert any(marker in result for result in tool_results_sent_to_model(script))
    agent_id, conversation_id = first["agent_id"], first["conversation_id"]
    assert isinstance(agent_id, str), first
    assert isinstance(conversation_id, str), first
    assert [agent.id for agent in client.agents.list()] == [agent_id]
    history = [
        message
        for message in client.conversations.messages.list(
            conversation_id, agent_id=agent_id, order="asc", limit=100
        ).items
        if message.message_type != "system_message"
    ]
    assert [message.message_type for message in history] == CLIENT_TOOL_TURN
    request, tool_return, answer = history[1], history[3], history[4]
    assert isinstance(request, ApprovalRequestMessage)
    assert request.tool_call.name == SHELL_TOOL
    assert request.tool_call.tool_call_id == SHELL_CALL_ID
    assert isinstance(tool_return, ToolReturnMessage)
    assert tool_return.tool_call_id == SHELL_CALL_ID
    assert tool_return.status == "success"
    assert marker in tool_return.tool_return
    assert isinstance(answer, AssistantMessage)
    assert answer.content == FIRST_ANSWER

    script.enqueue(when_shell_offered({"content": SECOND_ANSWER}))

    second = succeeded(letta_code.run("Say hello again."))

    assert second["result"] == SECOND_ANSWER
    assert second["agent_id"] == agent_id
    assert second["conversation_id"] != conversation_id
    assert [agent.id for agent in client.agents.list()] == [agent_id]

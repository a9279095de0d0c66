"""The interpreter tier (issue 10): where code sessions are off, a `run_code_with_tools`
snippet that needs nothing but its tools and pure modules runs in Monty (confined, started in
about a millisecond) instead of a sandbox process; anything else still takes a process. The
answer is the same either way; `kelpie_code_runs_total` says which tier ran it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from letta_client import Letta

from ._support import KelpieStarter, ScriptedLlm, calling, new_agent, reply, tool_call, unique
from .test_metrics import scrape, value

NO_SESSIONS = {"KELPIE_CODE_SESSIONS": "0"}


@pytest.fixture(scope="module")
def interpreter_server(kelpie_launcher: KelpieStarter) -> str:
    return kelpie_launcher.start(NO_SESSIONS)


@pytest.fixture
def client(interpreter_server: str) -> Iterator[Letta]:
    with Letta(base_url=interpreter_server, api_key="sk-test") as letta:
        yield letta


@pytest.fixture
def http(interpreter_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=interpreter_server, timeout=60) as client:
        yield client


def _scorer(client: Letta) -> Any:
    name = unique("score").replace("-", "_")
    source = (
        f"def {name}(word: str):\n"
        '    """Scores a word.\n\n    Args:\n        word (str): The word.\n    """\n'
        "    return {'word': word, 'score': len(word)}\n"
    )
    return client.tools.create(source_code=source)


def _run(client: Letta, script: ScriptedLlm, agent_id: str, code: str) -> Any:
    call = tool_call("run_code_with_tools", {"code": code}, call_id=unique("call"))
    script.enqueue(calling(call), reply("ran"))
    response = client.agents.messages.create(
        agent_id, messages=[{"role": "user", "content": "run it"}]
    )
    [returned] = [m for m in response.messages if m.message_type == "tool_return_message"]
    return returned


def test_a_tool_only_snippet_runs_in_the_interpreter(
    client: Letta, http: httpx.Client, script: ScriptedLlm
) -> None:
    scorer = _scorer(client)
    agent = new_agent(
        client,
        include_base_tools=False,
        tools=["run_code_with_tools", "core_memory_append"],
        tool_ids=[scorer.id],
        memory_blocks=[{"label": "human", "value": "Name: Sam"}],
    )
    code = (
        "import json\n"
        "best = None\n"
        "for word in ['kelp', 'urchin']:\n"
        f"    result = {scorer.name}(word)\n"
        "    if best is None or result['score'] > best['score']:\n"
        "        best = result\n"
        "    core_memory_append(label='human', content='Scored ' + word + '.')\n"
        "print(json.dumps(best))\n"
        "best['score']"
    )
    before = value(scrape(http), "kelpie_code_runs_total", tier="interpreter")

    returned = _run(client, script, agent.id, code)

    assert json.loads(returned.tool_return) == {
        "status": "success",
        "func_return": 6,
        "stdout": ['{"word": "urchin", "score": 6}\n'],
        "stderr": [],
    }
    block = client.agents.blocks.retrieve("human", agent_id=agent.id)
    assert block.value == "Name: Sam\nScored kelp.\nScored urchin."
    assert value(scrape(http), "kelpie_code_runs_total", tier="interpreter") == before + 1


def test_a_snippet_that_needs_more_takes_a_process(
    client: Letta, http: httpx.Client, script: ScriptedLlm
) -> None:
    agent = new_agent(client, include_base_tools=False, tools=["run_code_with_tools"])
    before = value(scrape(http), "kelpie_code_runs_total", tier="process")

    returned = _run(client, script, agent.id, "import os\nos.getcwd()")

    assert json.loads(returned.tool_return)["func_return"] == "/workspace"
    assert value(scrape(http), "kelpie_code_runs_total", tier="process") == before + 1


def test_an_approval_from_interpreted_code_resumes_it(
    client: Letta, http: httpx.Client, script: ScriptedLlm
) -> None:
    scorer = _scorer(client)
    agent = new_agent(
        client,
        include_base_tools=False,
        tools=["run_code_with_tools"],
        tool_ids=[scorer.id],
        tool_rules=[{"type": "requires_approval", "tool_name": scorer.name}],
    )
    code = f"rows = [1, 2]\nscored = {scorer.name}('otter')\nscored['score'] + sum(rows)"
    call = tool_call("run_code_with_tools", {"code": code}, call_id=unique("call"))
    script.enqueue(calling(call))
    response = client.agents.messages.create(
        agent.id, messages=[{"role": "user", "content": "score it"}]
    )
    assert response.stop_reason.stop_reason == "requires_approval"
    [request] = [m for m in response.messages if m.message_type == "approval_request_message"]
    script.enqueue(reply("done"))

    decision = {"type": "approval", "tool_call_id": request.tool_call.tool_call_id, "approve": True}
    approval: Any = {"type": "approval", "approvals": [decision]}
    answered = client.agents.messages.create(agent.id, messages=[approval])

    [returned] = [m for m in answered.messages if m.message_type == "tool_return_message"]
    assert json.loads(returned.tool_return)["func_return"] == 8
    assert value(scrape(http), "kelpie_code_runs_total", tier="interpreter") >= 2

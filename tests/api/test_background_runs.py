"""Background runs (letta-api.md §1.6, §2.12, §4): every streamed event is stored with a
seq id before it is sent; the run goes on when the client leaves; a client resumes from
its last seq id with nothing lost or repeated; a retried send with the same otid follows
the run it already started."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from letta_client import Letta

from ._support import ScriptedLlm, calling, new_agent, reply, tool_call

RUN_DONE_TIMEOUT_S = 20.0


def _events(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """(event name, data) of each server-sent event."""
    event: str | None = None
    for line in lines:
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            yield event, line.removeprefix("data:").strip()
            event = None


def _read(response: httpx.Response, stop_after: int | None = None) -> list[dict[str, Any] | str]:
    """The stream's payloads (JSON objects, or "[DONE]"), optionally only the first few."""
    assert response.status_code == 200, response.read()
    out: list[dict[str, Any] | str] = []
    for _, data in _events(response.iter_lines()):
        out.append(data if data == "[DONE]" else json.loads(data))
        if stop_after is not None and len(out) >= stop_after:
            break
    return out


def _seqs(items: list[dict[str, Any] | str]) -> list[int]:
    return [i["seq_id"] for i in items if isinstance(i, dict) and i.get("message_type") != "ping"]


def _send_body(text: str, otid: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": text}
    if otid is not None:
        message["otid"] = otid
    return {
        "messages": [message],
        "streaming": True,
        "stream_tokens": True,
        "background": True,
        "include_pings": True,
    }


def _wait_done(client: Letta, run_id: str) -> Any:
    deadline = time.monotonic() + RUN_DONE_TIMEOUT_S
    while time.monotonic() < deadline:
        run = client.runs.retrieve(run_id)
        if run.status not in ("created", "running"):
            return run
        time.sleep(0.05)
    pytest.fail(f"run {run_id} did not finish in {RUN_DONE_TIMEOUT_S} s")


def _slow_tool_steps(script: ScriptedLlm, steps: int, delay_s: float) -> None:
    """A turn of `steps` memory edits, each answer arriving after `delay_s`, then a reply."""
    for index in range(steps):
        edit = {"label": "human", "new_string": f"fact {index}"}
        script.enqueue(calling(tool_call("memory_insert", edit), delay_s=delay_s))
    script.enqueue(reply("All noted.", delay_s=delay_s))


@pytest.fixture
def conversation(client: Letta) -> str:
    agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
    return client.conversations.create(agent_id=agent.id).id


class TestStoredStream:
    def test_every_event_has_a_seq_id_in_order_and_the_stream_ends(
        self, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        script.enqueue(reply("Hello there, Ada!"))

        with http.stream(
            "POST", f"/v1/conversations/{conversation}/messages", json=_send_body("hi")
        ) as response:
            items = _read(response)

        first = items[0]
        assert isinstance(first, dict)
        assert first["message_type"] == "ping"
        assert first["run_id"].startswith("run-")
        assert items[-1] == "[DONE]"
        payloads = [i for i in items if isinstance(i, dict)]
        assert [p["message_type"] for p in payloads[-2:]] == ["stop_reason", "usage_statistics"]
        seqs = _seqs(items)
        assert seqs == list(range(1, len(seqs) + 1))
        text = "".join(p["content"] for p in payloads if p["message_type"] == "assistant_message")
        assert text == "Hello there, Ada!"

    def test_client_cut_off_resumes_from_its_last_seq_with_nothing_lost_or_repeated(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        _slow_tool_steps(script, steps=3, delay_s=0.3)

        with http.stream(
            "POST", f"/v1/conversations/{conversation}/messages", json=_send_body("note it")
        ) as response:
            head = _read(response, stop_after=4)  # a ping and the first few events; then gone
        run_id = head[0]["run_id"] if isinstance(head[0], dict) else ""
        last_seq = _seqs(head)[-1]

        with http.stream(
            "POST",
            f"/v1/conversations/{conversation}/stream",
            json={"starting_after": last_seq, "include_pings": False},
        ) as response:
            tail = _read(response)

        run = _wait_done(client, run_id)
        assert run.status == "completed"
        with http.stream(
            "POST", f"/v1/runs/{run_id}/stream", json={"starting_after": 0}
        ) as response:
            full = _read(response)
        assert _seqs(head) + _seqs(tail) == _seqs(full)
        assert [i for i in head if isinstance(i, dict) and i["message_type"] != "ping"] + [
            i for i in tail if isinstance(i, dict)
        ] == [i for i in full if isinstance(i, dict) and i["message_type"] != "ping"]
        assert tail[-1] == "[DONE]"

    def test_run_goes_on_after_the_client_leaves(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        _slow_tool_steps(script, steps=2, delay_s=0.2)

        with http.stream(
            "POST", f"/v1/conversations/{conversation}/messages", json=_send_body("go")
        ) as response:
            head = _read(response, stop_after=1)
        run_id = head[0]["run_id"] if isinstance(head[0], dict) else ""

        run = _wait_done(client, run_id)

        assert run.status == "completed"
        value = client.agents.blocks.retrieve("human", agent_id=run.agent_id).value
        assert "fact 0" in value
        assert "fact 1" in value

    def test_letta_code_resume_discovery_finds_the_running_run(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        _slow_tool_steps(script, steps=1, delay_s=0.5)
        with http.stream(
            "POST", f"/v1/conversations/{conversation}/messages", json=_send_body("go")
        ) as response:
            head = _read(response, stop_after=1)
        run_id = head[0]["run_id"] if isinstance(head[0], dict) else ""

        running = list(
            client.runs.list(
                statuses=["running"], order="desc", limit=1, conversation_id=conversation
            )
        )

        assert [r.id for r in running] == [run_id]
        assert running[0].background is True
        _wait_done(client, run_id)

    def test_no_active_run_is_400(self, http: httpx.Client, conversation: str) -> None:
        response = http.post(f"/v1/conversations/{conversation}/stream", json={})

        assert response.status_code == 400
        assert response.json()["detail"] == "No active runs found for this conversation."


class TestRetries:
    def test_same_otid_follows_the_run_already_started(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        script.enqueue(reply("only once", delay_s=0.3))
        otid = str(uuid.uuid4())
        url = f"/v1/conversations/{conversation}/messages"

        with http.stream("POST", url, json=_send_body("hi", otid)) as response:
            first = _read(response, stop_after=1)
        with http.stream("POST", url, json=_send_body("hi", otid)) as response:
            second = _read(response)

        run_id = first[0]["run_id"] if isinstance(first[0], dict) else ""
        assert isinstance(second[0], dict)
        assert second[0]["run_id"] == run_id
        assert second[-1] == "[DONE]"
        assert len(script.requests()) == 1
        runs = client.runs.list(conversation_id=conversation)
        assert [r.id for r in runs] == [run_id]
        listed = client.conversations.messages.list(conversation)
        users = [m for m in listed if m.message_type == "user_message"]
        assert len(users) == 1

    def test_stream_by_otid(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        script.enqueue(reply("found"))
        otid = str(uuid.uuid4())
        with http.stream(
            "POST", f"/v1/conversations/{conversation}/messages", json=_send_body("x", otid)
        ) as response:
            items = _read(response)

        with http.stream(
            "POST", f"/v1/conversations/{conversation}/stream", json={"otid": otid}
        ) as response:
            again = _read(response)

        assert _seqs(again) == _seqs(items)


class TestCancel:
    def test_cancelled_background_run_ends_its_stream_cancelled(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        script.enqueue(reply("too late", delay_s=5.0))
        url = f"/v1/conversations/{conversation}/messages"
        with http.stream("POST", url, json=_send_body("wait")) as response:
            head = _read(response, stop_after=1)
        run_id = head[0]["run_id"] if isinstance(head[0], dict) else ""

        cancelled = client.conversations.cancel(conversation)

        assert cancelled == {run_id: "cancelled"}
        with http.stream(
            "POST", f"/v1/runs/{run_id}/stream", json={"starting_after": 0}
        ) as response:
            items = _read(response)
        stops = [i for i in items if isinstance(i, dict) and i["message_type"] == "stop_reason"]
        assert [s["stop_reason"] for s in stops] == ["cancelled"]
        assert _wait_done(client, run_id).status == "cancelled"


class TestAsyncRuns:
    def test_an_async_run_can_be_followed_as_a_stream(
        self, client: Letta, http: httpx.Client, script: ScriptedLlm, conversation: str
    ) -> None:
        agent_id = client.conversations.retrieve(conversation).agent_id
        script.enqueue(reply("done in the background", delay_s=0.2))
        run = client.agents.messages.create_async(agent_id, input="go")

        with http.stream(
            "POST", f"/v1/runs/{run.id}/stream", json={"starting_after": 0}
        ) as response:
            items = _read(response)

        payloads = [i for i in items if isinstance(i, dict) and i["message_type"] != "ping"]
        assert [p["message_type"] for p in payloads] == [
            "assistant_message",
            "stop_reason",
            "usage_statistics",
        ]
        assert payloads[0]["content"] == "done in the background"
        assert items[-1] == "[DONE]"
        assert _wait_done(client, run.id).status == "completed"

"""Conversations (letta-api.md §1.5, §2.10): an agent's threads, each with its own
in-context messages and system message; the agent's own thread as `default` or by the
agent's id; fork, recompile, compact, cancel and the per-thread lock."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest
from letta_client import BadRequestError, Letta, NotFoundError

from ._support import ScriptedLlm, error_detail, model_messages, new_agent, reply, system_prompt


def _say(client: Letta, conversation_id: str, text: str, **extra: Any) -> Any:
    """A JSON send to a conversation (the conversations route streams by default)."""
    return client.conversations.messages.create(
        conversation_id,
        messages=[{"role": "user", "content": text}],
        streaming=False,
        **extra,
    )


def _texts(items: Any) -> list[str]:
    return [str(getattr(m, "content", "")) for m in items if m.message_type == "user_message"]


class TestCrud:
    def test_create_retrieve_list_update_delete(self, client: Letta) -> None:
        agent = new_agent(client)

        created = client.conversations.create(agent_id=agent.id, summary="Planning")

        assert created.id.startswith("conv-")
        assert created.agent_id == agent.id
        assert created.summary == "Planning"
        assert len(created.in_context_message_ids or []) == 1  # its own system message
        assert client.conversations.retrieve(created.id).id == created.id
        listed = client.conversations.list(agent_id=agent.id)
        assert [c.id for c in listed] == [created.id]
        updated = client.conversations.update(created.id, summary="Done", archived=True)
        assert updated.summary == "Done"
        assert updated.archived is True
        assert updated.archived_at is not None
        assert client.conversations.list(agent_id=agent.id) == []
        assert [c.id for c in client.conversations.list(agent_id=agent.id, archive_status="all")]
        client.conversations.delete(created.id)
        with pytest.raises(NotFoundError):
            client.conversations.retrieve(created.id)
        with pytest.raises(NotFoundError):
            client.conversations.update(created.id, summary="gone")

    def test_extra_fields_letta_code_sends_are_ignored(self, http: httpx.Client) -> None:
        agent_id = http.post("/v1/agents/", json={"model": "openai/gpt-4o-mini"}).json()["id"]

        response = http.post(
            f"/v1/conversations/?agent_id={agent_id}", json={"isolated_block_labels": []}
        )

        assert response.status_code == 200, response.text

    def test_unknown_agent_and_bad_ids_are_clear_4xx(self, http: httpx.Client) -> None:
        missing = "agent-00000000-0000-4000-8000-000000000000"
        assert http.post(f"/v1/conversations/?agent_id={missing}", json={}).status_code == 404
        assert http.get("/v1/conversations/conv-nope").status_code == 422
        bad = http.post("/v1/conversations/default/messages", json={"input": "hi"})
        assert bad.status_code == 400
        assert "agent_id" in bad.json()["detail"]

    def test_paging_terminates_and_yields_each_once(self, client: Letta) -> None:
        agent = new_agent(client)
        made = {client.conversations.create(agent_id=agent.id).id for _ in range(5)}

        seen: list[str] = []
        after: str | None = None
        while True:
            page = client.conversations.list(agent_id=agent.id, limit=2, after=after)
            if not page:
                break
            seen += [c.id for c in page]
            after = page[-1].id

        assert sorted(seen) == sorted(made)


class TestThreads:
    def test_each_conversation_keeps_its_own_context(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        first = client.conversations.create(agent_id=agent.id)
        second = client.conversations.create(agent_id=agent.id)
        script.enqueue(reply("one"), reply("two"))

        _say(client, first.id, "apples")
        _say(client, second.id, "pears")

        second_request = model_messages(script.requests()[1])
        contents = json.dumps(second_request)
        assert "pears" in contents
        assert "apples" not in contents
        assert f"CONVERSATION_ID: {second.id}" in system_prompt(script.requests()[1])
        assert _texts(client.conversations.messages.list(first.id)) == ["apples"]
        assert _texts(client.conversations.messages.list(second.id)) == ["pears"]

    def test_default_conversation_is_the_agents_own_thread(
        self, client: Letta, script: ScriptedLlm, http: httpx.Client
    ) -> None:
        agent = new_agent(client)
        script.enqueue(reply("hi"))

        response = http.post(
            "/v1/conversations/default/messages",
            json={
                "messages": [{"role": "user", "content": "hello"}],
                "agent_id": agent.id,
                "streaming": False,
            },
        )

        assert response.status_code == 200, response.text
        own = client.agents.messages.list(agent.id, conversation_id="default")
        assert _texts(own) == ["hello"]
        by_agent_id = client.conversations.messages.list(agent.id)
        assert _texts(by_agent_id) == ["hello"]

    def test_fork_shares_history_and_compiles_its_own_system_message(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        source = client.conversations.create(agent_id=agent.id)
        script.enqueue(reply("noted"))
        _say(client, source.id, "remember the blue door")
        source = client.conversations.retrieve(source.id)

        fork = client.conversations.fork(source.id)

        ids = fork.in_context_message_ids or []
        assert ids[1:] == (source.in_context_message_ids or [])[1:]
        assert ids[0] != (source.in_context_message_ids or [])[0]
        assert _texts(client.conversations.messages.list(fork.id)) == ["remember the blue door"]
        script.enqueue(reply("blue"))
        _say(client, fork.id, "which door?")
        sent = json.dumps(model_messages(script.requests()[-1]))
        assert "remember the blue door" in sent
        assert _texts(client.conversations.messages.list(source.id)) == ["remember the blue door"]

    def test_recompile_dry_run_and_real(self, client: Letta) -> None:
        agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
        conversation = client.conversations.create(agent_id=agent.id)
        client.agents.blocks.update("human", agent_id=agent.id, value="Name: Grace")

        preview = client.conversations.recompile(conversation.id, dry_run=True)

        assert "Name: Grace" in preview
        compiled = client.conversations.recompile(conversation.id)
        assert "Name: Grace" in compiled
        listed = client.conversations.messages.list(conversation.id, order="asc")
        system = next(m for m in listed if m.message_type == "system_message")
        assert "Name: Grace" in str(system.content)


class TestLockAndCancel:
    def test_two_concurrent_sends_exactly_one_409(
        self, client: Letta, script: ScriptedLlm, kelpie_server: str
    ) -> None:
        agent = new_agent(client)
        conversation = client.conversations.create(agent_id=agent.id)
        script.enqueue(reply("slow", delay_s=1.0), reply("fast"))
        statuses: list[int] = []
        bodies: list[Any] = []

        def send() -> None:
            with httpx.Client(base_url=kelpie_server, timeout=30) as raw:
                response = raw.post(
                    f"/v1/conversations/{conversation.id}/messages",
                    json={"input": "hi", "streaming": False},
                )
                statuses.append(response.status_code)
                bodies.append(response.json())

        workers = [threading.Thread(target=send) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        assert sorted(statuses) == [200, 409]
        busy = bodies[statuses.index(409)]
        assert "is currently being processed" in busy["detail"]
        assert busy["run_id"].startswith("run-")

    def test_cancel_stops_the_running_turn(
        self, client: Letta, script: ScriptedLlm, kelpie_server: str
    ) -> None:
        agent = new_agent(client)
        conversation = client.conversations.create(agent_id=agent.id)
        script.enqueue(reply("never seen", delay_s=5.0))
        result: list[Any] = []

        def send() -> None:
            with httpx.Client(base_url=kelpie_server, timeout=30) as raw:
                body = {"input": "hi", "streaming": False}
                result.append(raw.post(f"/v1/conversations/{conversation.id}/messages", json=body))

        worker = threading.Thread(target=send)
        worker.start()
        cancelled: dict[str, object] = {}
        for _ in range(200):
            try:
                cancelled = client.conversations.cancel(conversation.id)
                break
            except Exception:
                threading.Event().wait(0.02)
        worker.join()

        assert list(cancelled.values()) == ["cancelled"]
        assert result[0].json()["stop_reason"]["stop_reason"] == "cancelled"
        run = client.runs.retrieve(next(iter(cancelled)))
        assert run.status == "cancelled"

    def test_cancel_with_nothing_running_is_409(self, client: Letta, http: httpx.Client) -> None:
        agent = new_agent(client)
        conversation = client.conversations.create(agent_id=agent.id)

        response = http.post(f"/v1/conversations/{conversation.id}/cancel")

        assert response.status_code == 409
        assert "No active runs to cancel" in response.json()["detail"]


class TestCompaction:
    def test_compact_summarises_older_messages(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        conversation = client.conversations.create(agent_id=agent.id)
        for word in ("alpha", "beta", "gamma", "delta"):
            script.enqueue(reply(f"ack {word}"))
            _say(client, conversation.id, f"the word is {word} " + "x" * 200)
        script.enqueue(reply("They talked about four words."))

        result = client.conversations.messages.compact(conversation.id)

        assert result.summary == "They talked about four words."
        assert result.num_messages_after < result.num_messages_before
        script.enqueue(reply("ok"))
        _say(client, conversation.id, "and now?")
        sent = model_messages(script.requests()[-1])
        assert "They talked about four words." in json.dumps(sent)
        assert "the word is alpha" not in json.dumps(sent)
        listed = client.conversations.messages.list(conversation.id)
        assert any(m.message_type == "summary_message" for m in listed)

    def test_compact_of_an_empty_conversation_is_400(self, client: Letta) -> None:
        agent = new_agent(client)
        conversation = client.conversations.create(agent_id=agent.id)

        with pytest.raises(BadRequestError) as raised:
            client.conversations.messages.compact(conversation.id)

        assert "Summarization failed" in str(error_detail(raised.value))


class TestRequestOverrides:
    def test_client_skills_are_listed_for_the_request_only(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        conversation = client.conversations.create(agent_id=agent.id)
        skill = {"name": "deploy", "description": "Ships the app.\nMore.", "location": "/s/deploy"}
        script.enqueue(reply("ok"), reply("ok"))

        _say(client, conversation.id, "hi", client_skills=[skill])
        _say(client, conversation.id, "again")

        with_skill, without = (system_prompt(body) for body in script.requests())
        assert "deploy" in with_skill
        assert "Ships the app." in with_skill
        assert "deploy" not in without
        listed = client.conversations.messages.list(conversation.id, order="asc")
        stored = next(m for m in listed if m.message_type == "system_message")
        assert "deploy" not in str(stored.content)

    def test_override_system_and_model_apply_to_one_request(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        conversation = client.conversations.create(agent_id=agent.id)
        script.enqueue(reply("ok"), reply("ok"))

        _say(client, conversation.id, "hi", override_system="You are terse.")
        _say(client, conversation.id, "again")

        first, second = script.requests()
        assert system_prompt(first).startswith("You are terse.")
        assert not system_prompt(second).startswith("You are terse.")

    def test_unknown_override_model_is_a_clear_4xx(self, http: httpx.Client) -> None:
        agent_id = http.post("/v1/agents/", json={"model": "openai/gpt-4o-mini"}).json()["id"]
        body = {"input": "hi", "agent_id": agent_id, "streaming": False}
        body["override_model"] = "nowhere/nothing"

        response = http.post("/v1/conversations/default/messages", json=body)

        assert 400 <= response.status_code < 500
        assert response.json()["detail"]


class TestTurnsLeaveTheAgentAlone:
    def test_a_patch_during_a_turn_and_the_agents_secrets_survive_it(
        self, client: Letta, script: ScriptedLlm, kelpie_server: str
    ) -> None:
        agent = new_agent(client)
        client.agents.update(agent.id, secrets={"API_TOKEN": "s3cret"})
        script.enqueue(reply("slow answer", delay_s=1.0))
        done: list[int] = []

        def send() -> None:
            with httpx.Client(base_url=kelpie_server, timeout=30) as raw:
                done.append(
                    raw.post(f"/v1/agents/{agent.id}/messages", json={"input": "hi"}).status_code
                )

        worker = threading.Thread(target=send)
        worker.start()
        threading.Event().wait(0.3)
        client.agents.update(agent.id, name="renamed-mid-turn", tags=["mid"])
        worker.join()

        assert done == [200]
        after = client.agents.retrieve(agent.id, include=["agent.secrets", "agent.tags"])
        assert after.name == "renamed-mid-turn"
        assert after.tags == ["mid"]
        assert {s.key: s.value for s in after.secrets or []} == {"API_TOKEN": "s3cret"}
        assert len(after.message_ids or []) == 3  # system, user, assistant

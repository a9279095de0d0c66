"""Runs and steps of turns: `runs.list/retrieve`, `runs.messages.list`, `runs.steps.list`,
`steps.retrieve`, async sends, the one-turn-at-a-time lock and cancelling (letta-api.md
§1.4, §1.6, §2.8, §3.5)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
from letta_client import (
    ConflictError,
    Letta,
    NotFoundError,
    UnprocessableEntityError,
)
from letta_client.types.agents import AssistantMessage, Run
from letta_client.types.agents.letta_response import LettaResponse

from ._support import (
    ScriptedLlm,
    calling,
    error_detail,
    is_id,
    new_agent,
    reply,
    tool_call,
    unique,
)

HELLO: Any = [{"role": "user", "content": "Hello"}]
HUMAN_BLOCK: Any = {"label": "human", "value": "Name: Ada"}
MISSING_RUN = "run-00000000-0000-4000-8000-000000000000"
MISSING_STEP = "step-00000000-0000-4000-8000-000000000000"
FINISHED: Final = frozenset({"completed", "failed", "cancelled"})
POLL_INTERVAL_S = 0.05
WAIT_S = 30.0
# Long enough that a second request lands while the first turn waits on the model.
SLOW_ANSWER_S = 2.0
BUSY_PHRASE = "is currently being processed"


def run_id_of(response: LettaResponse) -> str:
    run_ids = response.usage.run_ids
    assert run_ids is not None
    assert len(run_ids) == 1, run_ids
    return run_ids[0]


def wait_for_run(client: Letta, run_id: str) -> Run:
    """Polls until the run has finished (completed, failed or cancelled)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        run = client.runs.retrieve(run_id)
        if run.status in FINISHED:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run.status} after {WAIT_S} s"
        time.sleep(POLL_INTERVAL_S)


def wait_for_model_requests(script: ScriptedLlm, count: int) -> None:
    """Waits until the fake model has received `count` requests: the turn is in flight."""
    deadline = time.monotonic() + WAIT_S
    while len(script.requests()) < count:
        assert time.monotonic() < deadline, f"the model got no request {count} in {WAIT_S} s"
        time.sleep(POLL_INTERVAL_S / 2)


class Background:
    """Runs one call in a thread; `result()` joins it and returns or re-raises."""

    def __init__(self, call: Callable[[], LettaResponse]) -> None:
        self._call = call
        self._result: LettaResponse | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = self._call()
        except BaseException as error:
            self._error = error

    def result(self) -> LettaResponse:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the background send did not finish"
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


@pytest.fixture
def in_flight() -> Iterator[list[Background]]:
    """Background sends of a test; joined at teardown so none outlives it."""
    sends: list[Background] = []
    yield sends
    for send in sends:
        try:
            send.result()
        except Exception:  # already reported by the test if it mattered
            pass


def send_in_background(client: Letta, agent_id: str, sends: list[Background]) -> Background:
    send = Background(lambda: client.agents.messages.create(agent_id, messages=HELLO))
    sends.append(send)
    return send


class TestRunRecords:
    def test_runs_list_shows_the_agents_completed_runs(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent, other = new_agent(client), new_agent(client)
        script.enqueue(reply("One"), reply("Two"), reply("Elsewhere"))
        first = run_id_of(client.agents.messages.create(agent.id, messages=HELLO))
        second = run_id_of(client.agents.messages.create(agent.id, messages=HELLO))
        client.agents.messages.create(other.id, messages=HELLO)

        runs = client.runs.list(agent_id=agent.id).items

        assert [run.id for run in runs] == [second, first]
        for run in runs:
            assert run.agent_id == agent.id
            assert run.status == "completed"
            assert run.stop_reason == "end_turn"

    def test_runs_list_filters_by_status(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Fine"), {"error": {"status": 400, "message": "bad request"}})
        done = run_id_of(client.agents.messages.create(agent.id, messages=HELLO))
        failed = run_id_of(client.agents.messages.create(agent.id, messages=HELLO))

        assert [r.id for r in client.runs.list(agent_id=agent.id, statuses=["failed"])] == [failed]
        completed = client.runs.list(agent_id=agent.id, statuses=["completed"])
        assert [r.id for r in completed] == [done]

    def test_retrieve_run(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Hi"))
        run_id = run_id_of(client.agents.messages.create(agent.id, messages=HELLO))

        run = client.runs.retrieve(run_id)

        assert run.id == run_id
        assert is_id("run", run.id)
        assert run.agent_id == agent.id
        assert run.status == "completed"
        assert run.stop_reason == "end_turn"
        assert run.created_at is not None
        assert run.created_at.tzinfo is not None
        assert run.completed_at is not None
        assert run.created_at <= run.completed_at
        assert run.metadata in (None, {})

    def test_run_messages_are_the_turns_messages(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(
            reply("Earlier turn"),
            calling(tool_call("memory_insert", insert)),
            reply("Noted."),
        )
        earlier = run_id_of(client.agents.messages.create(agent.id, messages=HELLO))
        response = client.agents.messages.create(agent.id, messages=HELLO)
        run_id = run_id_of(response)

        listed = client.runs.messages.list(run_id, order="asc").items

        assert {m.run_id for m in listed} == {run_id}
        produced = [(m.id, m.message_type) for m in response.messages]
        assert [(m.id, m.message_type) for m in listed if m.message_type != "user_message"] == (
            produced
        )
        assert earlier not in {m.run_id for m in listed}

    def test_unknown_run_is_404_and_malformed_is_422(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.runs.retrieve(MISSING_RUN)
        with pytest.raises(UnprocessableEntityError) as raised:
            client.runs.retrieve("not-a-run")
        assert "String should match pattern" in str(error_detail(raised.value))


class TestSteps:
    def test_steps_of_a_run_with_token_counts(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(calling(tool_call("memory_insert", insert)), reply("Noted."))
        response = client.agents.messages.create(agent.id, messages=HELLO)
        run_id = run_id_of(response)

        steps = client.runs.steps.list(run_id, order="asc").items

        assert len(steps) == 2
        assert {step.id for step in steps} == {m.step_id for m in response.messages}
        for step in steps:
            assert is_id("step", step.id)
            assert step.run_id == run_id
            assert step.agent_id == agent.id
            assert step.prompt_tokens
            assert step.completion_tokens
            assert step.total_tokens == step.prompt_tokens + step.completion_tokens
        fetched = client.steps.retrieve(steps[0].id)
        assert (fetched.id, fetched.run_id) == (steps[0].id, run_id)

    def test_step_token_counts_are_per_step(self, client: Letta, script: ScriptedLlm) -> None:
        # Letta's Step: "The number of tokens in the prompt during this step", not a sum.
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(
            calling(
                tool_call("memory_insert", insert),
                usage={"prompt_tokens": 100, "completion_tokens": 10},
            ),
            reply("Noted.", usage={"prompt_tokens": 200, "completion_tokens": 20}),
        )
        response = client.agents.messages.create(agent.id, messages=HELLO)

        steps = client.runs.steps.list(run_id_of(response), order="asc").items

        counts = [(s.prompt_tokens, s.completion_tokens, s.total_tokens) for s in steps]
        assert counts == [(100, 10, 110), (200, 20, 220)]
        assert response.usage.total_tokens == 330

    def test_unknown_step_is_404(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.steps.retrieve(MISSING_STEP)


class TestAsync:
    def test_async_send_returns_a_run_that_completes(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Async hello", delay_s=0.3))

        created = client.agents.messages.create_async(agent.id, messages=HELLO)

        assert is_id("run", created.id)
        assert created.agent_id == agent.id
        assert created.status == "created"
        run = wait_for_run(client, created.id)
        assert run.status == "completed"
        assert run.stop_reason == "end_turn"
        messages = client.runs.messages.list(created.id, order="asc").items
        replies = [m for m in messages if isinstance(m, AssistantMessage)]
        assert [m.content for m in replies] == ["Async hello"]
        history = client.agents.messages.list(agent.id, order="asc").items
        assert [m.id for m in history if isinstance(m, AssistantMessage)] == [replies[0].id]


class TestOneTurnAtATime:
    def test_second_send_during_a_turn_is_a_409_naming_the_run(
        self, client: Letta, script: ScriptedLlm, in_flight: list[Background]
    ) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Slow answer", delay_s=SLOW_ANSWER_S), reply("Not asked for."))
        first = send_in_background(client, agent.id, in_flight)
        wait_for_model_requests(script, 1)

        with pytest.raises(ConflictError) as raised:
            client.agents.messages.create(agent.id, messages=HELLO)
        response = first.result()

        run_id = run_id_of(response)
        assert response.stop_reason.stop_reason == "end_turn"
        conflict = raised.value.response
        assert conflict.status_code == 409
        assert conflict.headers.get("x-should-retry") == "false"
        body = conflict.json()
        assert BUSY_PHRASE in body["detail"]
        assert f"run_id={run_id}" in body["detail"]
        assert body["run_id"] == run_id
        assert len(script.requests()) == 1
        runs = client.runs.list(agent_id=agent.id).items
        assert [run.id for run in runs] == [run_id]

    def test_two_concurrent_sends_one_runs_one_gets_409(
        self, client: Letta, script: ScriptedLlm, in_flight: list[Background]
    ) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Slow answer", delay_s=SLOW_ANSWER_S), reply("Not asked for."))
        sends = [send_in_background(client, agent.id, in_flight) for _ in range(2)]

        answered: list[LettaResponse] = []
        conflicts: list[ConflictError] = []
        for send in sends:
            try:
                answered.append(send.result())
            except ConflictError as conflict:
                conflicts.append(conflict)

        assert len(answered) == 1, f"{len(answered)} sends answered, {len(conflicts)} refused"
        assert len(conflicts) == 1
        run_id = run_id_of(answered[0])
        body = conflicts[0].response.json()
        assert BUSY_PHRASE in body["detail"]
        assert body["run_id"] == run_id
        assert len(script.requests()) == 1

    def test_the_lock_is_released_after_the_turn(
        self, client: Letta, script: ScriptedLlm, in_flight: list[Background]
    ) -> None:
        agent = new_agent(client)
        script.enqueue(reply("Slow", delay_s=0.5), reply("Next"))
        send_in_background(client, agent.id, in_flight).result()

        response = client.agents.messages.create(agent.id, messages=HELLO)

        assert response.stop_reason.stop_reason == "end_turn"

    def test_other_agents_are_not_blocked(
        self, client: Letta, script: ScriptedLlm, in_flight: list[Background]
    ) -> None:
        busy, free = new_agent(client), new_agent(client)
        script.enqueue(reply("Slow", delay_s=SLOW_ANSWER_S), reply("Quick"))
        slow = send_in_background(client, busy.id, in_flight)
        wait_for_model_requests(script, 1)

        quick = client.agents.messages.create(free.id, messages=HELLO)

        assert quick.stop_reason.stop_reason == "end_turn"
        assert slow.result().stop_reason.stop_reason == "end_turn"


class TestCancel:
    def test_cancel_during_a_turn_ends_the_run_cancelled(
        self, client: Letta, script: ScriptedLlm, in_flight: list[Background]
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(
            calling(tool_call("memory_insert", insert), delay_s=SLOW_ANSWER_S),
            reply("This answer must not be asked for."),
        )
        send = send_in_background(client, agent.id, in_flight)
        wait_for_model_requests(script, 1)
        running = client.runs.list(agent_id=agent.id, statuses=["running"]).items
        assert len(running) == 1

        cancelled = client.agents.messages.cancel(agent.id)
        response = send.result()

        run_id = running[0].id
        assert run_id in cancelled
        assert run_id_of(response) == run_id
        assert response.stop_reason.stop_reason == "cancelled"
        assert len(script.requests()) == 1, "the loop asked the model again after the cancel"
        run = client.runs.retrieve(run_id)
        assert run.status == "cancelled"
        assert run.stop_reason == "cancelled"

    def test_cancel_a_chosen_run(
        self, client: Letta, script: ScriptedLlm, in_flight: list[Background]
    ) -> None:
        agent = new_agent(client, memory_blocks=[HUMAN_BLOCK])
        insert = {"label": "human", "new_string": "Likes tea"}
        script.enqueue(calling(tool_call("memory_insert", insert), delay_s=SLOW_ANSWER_S))
        send = send_in_background(client, agent.id, in_flight)
        wait_for_model_requests(script, 1)
        (running,) = client.runs.list(agent_id=agent.id, statuses=["running"]).items

        cancelled = client.agents.messages.cancel(agent.id, run_ids=[running.id])

        assert running.id in cancelled
        assert send.result().stop_reason.stop_reason == "cancelled"

    def test_cancel_with_no_active_run_is_409(self, client: Letta) -> None:
        # §1.4: 409 NoActiveRunsToCancel when nothing is active.
        agent = new_agent(client, name=unique("idle"))

        with pytest.raises(ConflictError):
            client.agents.messages.cancel(agent.id)

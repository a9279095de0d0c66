"""Background runs under simulation: a client sends a turn as a background stream through
the conversations route, reads it, resumes it from a random seq id, retries it with the
same otid, and after every crash reads each stream it saw again from the start.

Invariants: a stored stream's seq ids only grow and it ends with [DONE]; resuming after
seq N gives exactly the events after N; a retried send follows the same run and yields the
same events; and no crash loses or changes an event a client was sent (events are stored
before they are sent, so what a client saw is what the store keeps)."""

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Final

from kelpie.sim._checks import acknowledged, require
from kelpie.sim._llm import (
    CALLS_MARK,
    CODE_MARK,
    MCP_MARK,
    TOKEN_KEY_PREFIX,
    TOKEN_MARK,
    token_key_call_id,
)
from kelpie.sim._memory_checks import canonical
from kelpie.sim._model import AgentModel, KeyState, Known
from kelpie.sim._workload_code import check_code_return, code_token_count, expect_code_call
from kelpie.sim._workload_mcp import check_mcp_returns, mcp_call_count
from kelpie.sim._workload_tools import (
    check_calls_answered,
    check_custom_returns,
    check_stream_ended,
    custom_call_count,
    expect_custom_calls,
)

if TYPE_CHECKING:
    from kelpie.sim._workload import Client

DONE: Final = "[DONE]"
# Share of background sends retried at once with the same otids.
RETRY_SHARE: Final = 0.3


@dataclasses.dataclass(frozen=True)
class StreamEvent:
    event: str | None
    data: str

    @property
    def seq_id(self) -> int | None:
        if self.data == DONE:
            return None
        seq = json.loads(self.data).get("seq_id")
        return seq if isinstance(seq, int) else None


def parse_sse(body: Any) -> list[StreamEvent]:
    """The events of a server-sent-events body, pings left out."""
    require(isinstance(body, str), f"a stream answered with JSON: {body!r}")
    events: list[StreamEvent] = []
    name: str | None = None
    for line in str(body).splitlines():
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data = line.removeprefix("data:").strip()
            if data == DONE or json.loads(data).get("message_type") != "ping":
                events.append(StreamEvent(name, data))
            name = None
    return events


def check_stored_stream(what: str, events: list[StreamEvent], faults: tuple[str, ...]) -> int:
    """Checks a stream; returns how many of its events are stored ones (with seq ids). A
    stream the server could not read to its end (an injected fault) ends with an error it
    adds itself, unstored: no seq ids."""
    require(bool(events), f"{what}: an empty stream")
    require(events[-1].data == DONE, f"{what}: the stream does not end with [DONE]")
    seqs = [e.seq_id for e in events[:-1]]
    stored = len(seqs) if None not in seqs else seqs.index(None)
    numbers = [s for s in seqs[:stored] if s is not None]
    require(numbers == sorted(set(numbers)), f"{what}: seq ids not increasing: {numbers}")
    require(all(s is None for s in seqs[stored:]), f"{what}: stored events after unstored: {seqs}")
    if stored < len(seqs):
        require(bool(faults), f"{what}: an unstored ending with no fault injected: {seqs}")
        return stored
    return stored + 1  # the stored [DONE]


def _run_id(events: list[StreamEvent]) -> str | None:
    """Items name their run; the usage statistics list it."""
    for event in events:
        if event.data != DONE:
            item = json.loads(event.data)
            run_id = item.get("run_id") or (item.get("run_ids") or [None])[0]
            if isinstance(run_id, str):
                return run_id
    return None


async def send_background(client: "Client", agent: AgentModel) -> None:
    """One background turn on the agent's own thread, read whole, resumed from a random
    point, and maybe retried with the same otids."""
    journal = client.model.blocks[agent.journal_id or ""]
    client.model.turns_sent += 1
    token = f"{client.name}b{client.model.turns_sent}"
    journal.tokens_maybe.add(token)
    key = f"{TOKEN_KEY_PREFIX}{token}"
    if agent.working_memory_tools:
        agent.working_memory.setdefault(key, Known(None)).intend(KeyState(canonical(token)))
    calls = custom_call_count(agent, client.entropy.random())
    expect_custom_calls(journal, agent, token, calls)
    mcp = mcp_call_count(agent, client.entropy.random())
    code = code_token_count(agent, client.entropy)
    expect_code_call(journal, token, code, client.model.sessions, agent.id)
    text = f"record {TOKEN_MARK}{token} {CALLS_MARK}{calls} {MCP_MARK}{mcp} {CODE_MARK}{code}"
    otid = client.entropy.new_id("otid").removeprefix("otid-")
    body = {
        "messages": [{"role": "user", "content": text, "otid": otid}],
        "agent_id": agent.id,
        "streaming": True,
        "background": True,
        "stream_tokens": client.entropy.random() < 0.5,
        "include_pings": False,
    }
    url = "/v1/conversations/default/messages"
    outcome = await client.send("send_background", "POST", url, json=body)
    busy = (409,) if agent.run_maybe_running else ()
    if not acknowledged(outcome, "send_background", 200, 404, *busy) or outcome.status != 200:
        return
    events = parse_sse(outcome.body)
    stored = check_stored_stream("send_background", events, outcome.faults)
    items = [json.loads(e.data) for e in events if e.data != DONE]
    returns = [r for r in items if r.get("message_type") == "tool_return_message"]
    recorded = any(
        r.get("tool_call_id") == f"call-{token}" and r.get("status") == "success" for r in returns
    )
    complete = stored == len(events)
    if complete:
        check_calls_answered("send_background", items, deltas=True)
        check_stream_ended("send_background", items)
    check_custom_returns(
        "send_background", journal, agent, token, calls, items, outcome.faults, complete=complete
    )
    check_mcp_returns(
        "send_background", agent, token, mcp, items, outcome.faults, complete=complete
    )
    check_code_return(
        "send_background",
        journal,
        agent,
        token,
        code,
        items,
        outcome.faults,
        complete=complete,
        sessions=client.model.sessions,
    )
    if agent.working_memory_tools and complete:
        # The turn's working_memory_set committed with its step, or failed and wrote nothing.
        set_ok = any(
            r.get("tool_call_id") == token_key_call_id(token) and r.get("status") == "success"
            for r in returns
        )
        agent.working_memory[key].acknowledge(KeyState(canonical(token)) if set_ok else None)
    if recorded:
        journal.tokens_certain.add(token)
    if recorded or complete:
        journal.tokens_maybe.discard(token)
    run_id = _run_id(events)
    require(run_id is not None, f"send_background: no run id in {events[:2]}")
    assert run_id is not None
    agent.run_maybe_running = not complete
    if not complete:
        # Cut short by a fault: the run may still go on, and commit its token later.
        journal.tokens_pending.add(token)
        return
    client.model.streams[run_id] = (agent.id, [(e.event, e.data) for e in events])
    await _check_resume(client, run_id, events)
    if client.entropy.random() < RETRY_SHARE:
        retried = await client.send("retry_background", "POST", url, json=body)
        if acknowledged(retried, "retry_background", 200) and retried.status == 200:
            again = parse_sse(retried.body)
            stored_again = check_stored_stream("retry_background", again, retried.faults)
            shown = events[:stored_again] if stored_again < len(again) else events
            require(again[:stored_again] == shown, f"retry of {run_id} followed another run")


async def _check_resume(client: "Client", run_id: str, events: list[StreamEvent]) -> None:
    cut = client.entropy.choice_index(len(events))
    after = 0 if cut == 0 else events[cut - 1].seq_id or 0
    outcome = await client.send(
        "resume_stream", "POST", f"/v1/runs/{run_id}/stream", json={"starting_after": after}
    )
    if not acknowledged(outcome, "resume_stream", 200):
        return
    tail = parse_sse(outcome.body)
    stored = check_stored_stream("resume_stream", tail, outcome.faults)
    expected = [e for e in events if e.data == DONE or (e.seq_id or 0) > after]
    if stored < len(tail):
        expected = expected[:stored]
        tail = tail[:stored]
    require(tail == expected, f"resume of {run_id} after seq {after}: {tail} != {expected}")


async def audit_streams(client: "Client") -> None:
    """Every stream the client was sent is still stored exactly as it was sent, and every
    background run of its agents has a stored end (a run cut off by a crash was ended at
    start-up: its readers are never left waiting)."""
    for run_id, (agent_id, seen) in client.model.streams.items():
        agent = client.model.agents[agent_id]
        if not (agent.exists.certain and agent.exists.value):
            continue  # deleting an agent deletes its runs
        stored = await _replay(client, run_id)
        if stored is not None:
            require(stored == seen, f"run {run_id}: stored stream changed after a crash")
    for agent in client.model.agents.values():
        if agent.exists.certain and agent.exists.value:
            await _audit_agent_runs(client, agent)


async def _replay(client: "Client", run_id: str) -> list[tuple[str | None, str]] | None:
    outcome = await client.send(
        "audit_stream", "POST", f"/v1/runs/{run_id}/stream", json={"starting_after": 0}
    )
    # 410: a clock jump aged the run past the three hours streams are kept.
    if not acknowledged(outcome, "audit_stream", 200, 410) or outcome.status == 410:
        return None
    events = parse_sse(outcome.body)
    stored = check_stored_stream(f"run {run_id}", events, outcome.faults)
    require(stored == len(events), f"run {run_id}: its stored stream has no end")
    return [(e.event, e.data) for e in events]


async def _audit_agent_runs(client: "Client", agent: AgentModel) -> None:
    params = {"agent_id": agent.id, "background": True, "limit": 1000}
    outcome = await client.send("audit_background_runs", "GET", "/v1/runs/", params=params)
    if acknowledged(outcome, "audit background runs", 200):
        for run in outcome.body:
            await _replay(client, run["id"])

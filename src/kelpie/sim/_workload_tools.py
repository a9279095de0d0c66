"""Custom tools under simulation: the workload's tool sources, and the checks of the turns
that call them.

A workload tool returns `<city>:<days>`; one that takes `agent_state` also appends `city`
to the agent's journal block through it, as its own line (a journal token, recorded with
the step like a memory tool's edit, under the call's id `call-<city>`). A turn asked for n
custom calls (`calls:n`) makes them in its first step, beside memory_insert; the calls of
tools without agent_state run concurrently. Sandbox faults turn a call into an error
return (a killed worker, a timeout); they never lose the return nor fail the request.

Invariants: every tool call in an acknowledged turn (and in an agent's stored history) has
exactly one tool return; a custom call's return is its tool's value, or, only when a
sandbox fault was injected, the sandbox's error; a turn that made custom calls ended, its
run in exactly one terminal state with the turn's stop reason; an acknowledged custom
return survives every crash with its status.
"""

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from kelpie.sim._checks import FAILURE_FAULTS, LLM_FAULTS, acknowledged, require
from kelpie.sim._faults import SANDBOX_FAULTS
from kelpie.sim._llm import JOURNAL_LABEL, custom_call_id, custom_return, custom_token
from kelpie.sim._model import AgentModel, BlockModel
from kelpie.sim._sandbox import CRASH_ERROR

if TYPE_CHECKING:
    from kelpie.sim._workload import Client

TIMEOUT_ERROR_PREFIX: Final = "Tool timed out after "
TERMINAL_RUN_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
# Custom calls per turn, by weight: none, one, two (two run in one step, concurrently).
CUSTOM_CALLS_WEIGHTS: Final = (0.15, 0.45, 0.4)
# Sandbox timeouts a tool may set (metadata_.sandbox.timeout_s); None: the server default.
TOOL_TIMEOUTS_S: Final = (None, None, 2.0, 5.0, 30.0)


def tool_source(name: str, *, takes_state: bool) -> str:
    """A workload tool's source: deterministic code the simulated sandbox runs."""
    doc = (
        '    """Looks up the weather.\n\n    Args:\n'
        '        city: Which city.\n        days: How many days ahead.\n    """\n'
    )
    if not takes_state:
        header = f"def {name}(city: str, days: int = 1) -> str:\n"
        return f"{header}{doc}    return f'{{city}}:{{days}}'\n"
    return (
        f'def {name}(city: str, days: int = 1, agent_state: "AgentState" = None) -> str:\n'
        f"{doc}"
        f'    journal = agent_state.memory.get_block("{JOURNAL_LABEL}").value\n'
        "    value = journal + '\\n' + city if journal else city\n"
        f'    agent_state.memory.update_block_value("{JOURNAL_LABEL}", value)\n'
        "    return f'{city}:{days}'\n"
    )


def custom_call_count(agent: AgentModel, draw: float) -> int:
    if not agent.custom_tools:
        return 0
    for count, weight in enumerate(CUSTOM_CALLS_WEIGHTS):
        draw -= weight
        if draw < 0:
            return count
    return len(CUSTOM_CALLS_WEIGHTS) - 1


def _state_calls(agent: AgentModel, count: int) -> list[int]:
    """Which of a turn's custom calls go to a tool that takes agent_state."""
    tools = agent.custom_tools
    return [index for index in range(count) if tools[index % len(tools)][1]]


def expect_custom_calls(journal: BlockModel, agent: AgentModel, token: str, count: int) -> None:
    """Before a turn is sent: the lines its agent_state calls may add to the journal."""
    for index in _state_calls(agent, count):
        journal.tokens_maybe.add(custom_token(token, index))


def check_calls_answered(
    what: str, items: Iterable[Mapping[str, Any]], *, deltas: bool = False
) -> None:
    """Every tool call among the items has exactly one tool return (call ids may repeat
    across turns: an injected malformed call always has the same one). With `deltas` (a
    token stream, where one call may come in several items) only that each has one, except
    the calls of a last step that failed: their previews were streamed before its commit
    failed, and the stream then ends with an error (nothing of that step was stored)."""
    called: collections.Counter[str] = collections.Counter()
    returned: collections.Counter[str] = collections.Counter()
    since_last_return: set[str] = set()
    for item in items:
        if item.get("message_type") == "tool_call_message":
            call_id = (item.get("tool_call") or {}).get("tool_call_id")
            if call_id:
                called[call_id] += 1
                since_last_return.add(call_id)
        elif item.get("message_type") == "tool_return_message":
            returned[item["tool_call_id"]] += 1
            since_last_return.clear()
    if deltas:
        # Calls counted once per id: each needs a return, and a return needs a call.
        called = collections.Counter({call_id: returned[call_id] or 1 for call_id in called})
        ended_in_error = any(
            item.get("message_type") == "stop_reason" and item.get("stop_reason") == "error"
            for item in items
        )
        if ended_in_error:
            for call_id in since_last_return - set(returned):
                del called[call_id]
    unanswered = {
        call_id: (called[call_id], returned[call_id])
        for call_id in sorted(called | returned)
        if returned[call_id] != called[call_id]
    }
    require(not unanswered, f"{what}: tool calls and their returns (calls, returns): {unanswered}")


def check_custom_returns(
    what: str,
    journal: BlockModel,
    agent: AgentModel,
    token: str,
    count: int,
    items: Sequence[Mapping[str, Any]],
    faults: tuple[str, ...],
    *,
    complete: bool,
) -> None:
    """A turn's custom calls against what their tools return; `complete` when the turn is
    over (acknowledged, or its whole stream read). Settles the journal lines of its
    agent_state calls."""
    returns = {
        item["tool_call_id"]: item
        for item in items
        if item.get("message_type") == "tool_return_message"
    }
    # The model's answer that called memory_insert called the custom tools too: if that
    # step committed (memory_insert has its return), so did theirs. (A call's preview alone
    # says nothing: a token stream shows it before the step's commit, which may fail.)
    answered = f"call-{token}" in returns
    # With no fault but latency, the turn must have run every call it was asked for.
    faultless = not FAILURE_FAULTS.union(LLM_FAULTS).intersection(faults)
    sandbox_faulted = bool(set(SANDBOX_FAULTS).intersection(faults))
    state_calls = _state_calls(agent, count)
    for index in range(count):
        call_id = custom_call_id(token, index)
        item = returns.get(call_id)
        if item is None:
            require(
                not complete or not (answered or faultless),
                f"{what}: custom call {call_id} has no tool return (memory_insert called:"
                f" {answered}; faults {faults})",
            )
        else:
            status = item["status"]
            message = returned_text(item)
            if status == "success":
                expected = custom_return(token, index)
                require(message == expected, f"{what}: {call_id} returned {message!r}")
            else:
                require(
                    sandbox_faulted,
                    f"{what}: custom call {call_id} failed with no sandbox fault: {message!r}",
                )
                require(
                    message == CRASH_ERROR or message.startswith(TIMEOUT_ERROR_PREFIX),
                    f"{what}: custom call {call_id} failed with {message!r}",
                )
            agent.custom_returns[call_id] = status
        if index in state_calls:
            line = custom_token(token, index)
            if item is not None and item["status"] == "success":
                journal.tokens_certain.add(line)
            if complete:
                journal.tokens_maybe.discard(line)
            else:
                journal.tokens_pending.add(line)


def returned_text(item: Mapping[str, Any]) -> str:
    """What a tool returned: as it is (letta_v1 agents), or inside Letta's packaging."""
    text = str(item["tool_return"])
    try:
        packaged = json.loads(text)
    except ValueError:
        return text
    if isinstance(packaged, dict) and {"status", "message"} <= set(packaged):
        return str(packaged["message"])
    return text


def check_stream_ended(what: str, items: Iterable[Mapping[str, Any]]) -> None:
    """A whole stored stream holds exactly one end of its run (one stop reason)."""
    stops = [item for item in items if item.get("message_type") == "stop_reason"]
    require(len(stops) == 1, f"{what}: the run ended {len(stops)} times: {stops}")


async def check_run_ended(client: "Client", what: str, body: Mapping[str, Any]) -> None:
    """An acknowledged turn's run is in a terminal state, with the turn's stop reason."""
    run_ids = {m["run_id"] for m in body["messages"] if m.get("run_id")}
    require(len(run_ids) <= 1, f"{what}: one turn in runs {sorted(run_ids)}")
    if not run_ids:
        return
    run_id = run_ids.pop()
    outcome = await client.send("get_run", "GET", f"/v1/runs/{run_id}")
    if not acknowledged(outcome, "get_run", 200):
        return
    run = outcome.body
    stop = body["stop_reason"]["stop_reason"]
    require(
        run["status"] in TERMINAL_RUN_STATUSES and run["stop_reason"] == stop,
        f"{what}: run {run_id} is {run['status']} ({run['stop_reason']}) after a turn that"
        f" stopped with {stop}",
    )


def check_history_returns(agent: AgentModel, items: Iterable[Mapping[str, Any]]) -> None:
    """An agent's stored history: every tool call has one return; every custom return of
    an acknowledged turn is there with the status the client was given."""
    items = list(items)
    check_calls_answered(f"history of agent {agent.id}", items)
    stored = {
        item["tool_call_id"]: item["status"]
        for item in items
        if item.get("message_type") == "tool_return_message"
    }
    changed = {
        call_id: (status, stored.get(call_id))
        for call_id, status in agent.custom_returns.items()
        if stored.get(call_id) != status
    }
    require(
        not changed,
        f"agent {agent.id}: acknowledged custom tool returns lost or changed: {changed}",
    )

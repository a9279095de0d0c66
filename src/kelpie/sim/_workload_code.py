"""Code mode under simulation: agents with `run_code_with_tools`, turns whose first step
runs code that calls the agent's memory tool in a loop, and the checks of those turns.

About `CODE_TOOLS_SHARE` of the agents a client creates get `run_code_with_tools`. A turn
to such an agent asks, `CODE_TURN_SHARE` of the time, for 1-`CODE_TOKENS_MAX` tokens from
code (`code:k`): the model's first step is then one run_code_with_tools call alone, id
`code-<token>`, whose snippet calls memory_insert on the journal for `<token>k0`,
`<token>k1`, ... in a loop. Each of those calls runs on the host through the turn's tool
session, so its edit waits for the step's commit like a direct call's, and the journal's
history names the code call for each line. With its return in hand the model goes on as
in any turn (memory_insert of the turn's token, its custom and MCP calls), then replies.
A `sandbox_crash` kills the code's worker between two of its calls: the calls made before
have run, and commit with the step; a `sandbox_timeout` ends the code before any call.

Invariants: every code call of an acknowledged turn (and of a whole stored stream) has
exactly one tool return (`check_calls_answered`), there whenever the turn's next step
committed or no fault was injected; its return is Letta's `{status, func_return, stdout,
stderr}` with the item's status; a success means every one of its tokens is in the
journal, once, in order; a failure happens only when a sandbox fault was injected, with
the sandbox's crash or timeout error, and then the journal holds a prefix of its tokens,
once each, in order: nothing committed twice, nothing the code did not reach
(`kelpie.sim._checks.check_code_lines`, on every read of the journal); an acknowledged
code return survives every crash with its status, and so do the lines of a success; the
turn's run ends in exactly one terminal state with the turn's stop reason.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from kelpie.env import Entropy
from kelpie.sim._checks import FAILURE_FAULTS, LLM_FAULTS, require
from kelpie.sim._faults import SANDBOX_FAULTS
from kelpie.sim._llm import CODE_TOOL, SESSION_RUNS_PREFIX, code_call_id, code_tokens
from kelpie.sim._model import AgentModel, BlockModel, CodeCallModel
from kelpie.sim._sandbox import CRASH_ERROR
from kelpie.sim._sessions import SessionWorld
from kelpie.sim._workload_tools import TIMEOUT_ERROR_PREFIX, returned_text

# Share of agents created with run_code_with_tools, and of their turns that run code.
CODE_TOOLS_SHARE: Final = 0.4
CODE_TURN_SHARE: Final = 0.7
CODE_TOKENS_MAX: Final = 5
CODE_TOOLS: Final = (CODE_TOOL,)
RETURN_KEYS: Final = frozenset({"status", "func_return", "stdout", "stderr"})


def code_token_count(agent: AgentModel, entropy: Entropy) -> int:
    """How many tokens a turn to the agent asks to append from code (0: no code step)."""
    if not agent.code_tools or entropy.random() >= CODE_TURN_SHARE:
        return 0
    return 1 + entropy.choice_index(CODE_TOKENS_MAX)


def expect_code_call(
    journal: BlockModel, token: str, count: int, sessions: SessionWorld | None, agent_id: str
) -> None:
    """Before a turn is sent: the lines its code may add to the journal, and how many times
    its agent's session was lost so far."""
    if count:
        losses = 0 if sessions is None else sessions.losses[agent_id]
        call = CodeCallModel(code_tokens(token, count), losses_at_send=losses)
        journal.code_calls[code_call_id(token)] = call
        journal.tokens_maybe.update(call.tokens)


def check_session_runs(
    what: str,
    agent: AgentModel,
    call: CodeCallModel,
    stdout: Any,
    sessions: SessionWorld | None,
) -> None:
    """The code's session count (`runs N`) only grows while the session was never lost:
    a session paused when idle, restored, or kept across a restart, remembers its runs, and
    no other agent's code adds to them. After a loss it may start again from 1. A loss
    between the last seen run's send and now may have come before or after that run."""
    prefix = SESSION_RUNS_PREFIX
    runs = None
    if isinstance(stdout, list) and len(stdout) == 1 and str(stdout[0]).startswith(prefix):
        runs = int(str(stdout[0])[len(prefix) :].strip())
    require(runs is not None and runs >= 1, f"{what}: code printed {stdout!r}")
    assert runs is not None
    losses = 0 if sessions is None else sessions.losses[agent.id]
    if losses == agent.session_losses:
        require(
            runs > agent.session_runs,
            f"{what}: code ran {runs} times in its session, after {agent.session_runs}"
            " seen, and the session was never lost",
        )
    agent.session_runs = runs
    agent.session_losses = call.losses_at_send


def check_code_return(
    what: str,
    journal: BlockModel,
    agent: AgentModel,
    token: str,
    count: int,
    items: Sequence[Mapping[str, Any]],
    faults: tuple[str, ...],
    *,
    complete: bool,
    sessions: SessionWorld | None,
) -> None:
    """A turn's code call against what code mode returns; `complete` when the turn is over
    (acknowledged, or its whole stream read). Records the return's status, for the
    journal's checks and the audit."""
    if not count:
        return
    call_id = code_call_id(token)
    call = journal.code_calls[call_id]
    returns = [
        item
        for item in items
        if item.get("message_type") == "tool_return_message" and item["tool_call_id"] == call_id
    ]
    require(len(returns) <= 1, f"{what}: code call {call_id} returned {len(returns)} times")
    if not returns:
        # The step after the code's committed (memory_insert has its return): so did the
        # code's. With no fault but latency, the turn made every step it was asked for.
        answered = any(
            item.get("message_type") == "tool_return_message"
            and item["tool_call_id"] == f"call-{token}"
            for item in items
        )
        faultless = not FAILURE_FAULTS.union(LLM_FAULTS).intersection(faults)
        require(
            not complete or not (answered or faultless),
            f"{what}: code call {call_id} has no tool return (memory_insert called:"
            f" {answered}; faults {faults})",
        )
        if complete:
            journal.tokens_maybe.difference_update(call.tokens)  # its step never committed
        else:
            journal.tokens_pending.update(call.tokens)  # the run may still commit it
        return
    [item] = returns
    status = item["status"]
    text = returned_text(item)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    require(
        isinstance(body, dict) and set(body) == RETURN_KEYS and body["status"] == status,
        f"{what}: code call {call_id} ({status}) returned {text!r}",
    )
    if status == "success":
        require(
            body["func_return"] is None and body["stderr"] == [],
            f"{what}: code call {call_id} returned {text!r}",
        )
        check_session_runs(what, agent, call, body["stdout"], sessions)
        journal.tokens_certain.update(call.tokens)
    else:
        require(
            bool(set(SANDBOX_FAULTS).intersection(faults)),
            f"{what}: code call {call_id} failed with no sandbox fault: {text!r}",
        )
        error = str(body["func_return"])
        require(
            error == CRASH_ERROR or error.startswith(TIMEOUT_ERROR_PREFIX),
            f"{what}: code call {call_id} failed with {error!r}",
        )
        # Its tokens stay possible: the calls before the crash committed with the step.
    call.status = status
    agent.custom_returns[call_id] = status

"""Invariant checks shared by the workload and the audits: what a response must look like
given the reference model."""

import datetime as dt
from typing import Any, Final

from kelpie.sim._model import AgentModel, BlockModel, ToolModel, settling
from kelpie.sim._server import Outcome

RETRYABLE_STATUS: Final = 503
LLM_FAULTS: Final = frozenset(
    {"llm_timeout", "llm_error", "llm_rate_limit", "llm_malformed", "llm_empty"}
)
FAILURE_FAULTS: Final = frozenset(
    {"storage_write_failure", "storage_read_failure", "crash_before_commit", "crash_after_commit"}
)


class InvariantBroken(AssertionError):
    """The server did something no fault explains."""


def acknowledged(outcome: Outcome, what: str, *expected: int) -> bool:
    """True when the server answered one of `expected`; False when it did not answer or
    answered with a fault-explained retryable error. Anything else breaks an invariant."""
    if outcome.crashed:
        return False
    status = outcome.status
    assert status is not None
    if status >= 500:
        if not FAILURE_FAULTS.intersection(outcome.faults):
            raise InvariantBroken(f"{what}: {status} with no injected fault: {outcome.body!r}")
        if status != RETRYABLE_STATUS or not _detail(outcome):
            raise InvariantBroken(
                f"{what}: fault surfaced as {status}, not a retryable 503 with a detail:"
                f" {outcome.body!r}"
            )
        return False
    if status not in expected:
        raise InvariantBroken(f"{what}: status {status}, expected {expected}: {outcome.body!r}")
    if status >= 400 and not _detail(outcome):
        raise InvariantBroken(f"{what}: {status} without a detail: {outcome.body!r}")
    return True


def _detail(outcome: Outcome) -> str:
    body = outcome.body
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else ""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantBroken(message)


def check_exists(model: AgentModel | BlockModel | ToolModel, status: int, what: str) -> bool:
    """Settles existence from a 200/404 read; True when the object exists."""
    exists = status == 200
    require(
        model.exists.allows(exists), f"{what}: {model.id} exists={exists}, model {model.exists}"
    )
    model.exists.settle(exists)
    return exists


def check_agent_body(
    agent: AgentModel, body: dict[str, Any], blocks: dict[str, BlockModel]
) -> None:
    what = f"agent {agent.id}"
    require(body.get("id") == agent.id, f"{what}: body has id {body.get('id')}")
    require(agent.name.allows(body["name"]), f"{what}: name {body['name']!r}, model {agent.name}")
    agent.name.settle(body["name"])
    tags = tuple(sorted(body["tags"]))
    require(agent.tags.allows(tags), f"{what}: tags {tags}, model {agent.tags}")
    agent.tags.settle(tags)
    block_ids = tuple(sorted(block["id"] for block in body["blocks"]))
    require(
        agent.block_ids.allows(block_ids), f"{what}: blocks {block_ids}, model {agent.block_ids}"
    )
    agent.block_ids.settle(block_ids)
    for block in body["blocks"]:
        model = blocks.get(block["id"])
        require(model is not None, f"{what}: unknown block {block['id']} attached")
        assert model is not None
        check_block_body(model, block)


def check_block_body(block: BlockModel, body: dict[str, Any]) -> None:
    what = f"block {block.id}"
    require(body.get("label") == block.label, f"{what}: label {body.get('label')!r}")
    if block.journal:
        check_journal(block, body["value"])
        return
    require(
        block.value.allows(body["value"]), f"{what}: value {body['value']!r}, model {block.value}"
    )
    block.value.settle(body["value"])
    require(len(body["value"]) <= body["limit"], f"{what}: value longer than its limit")


def check_tool_body(tool: ToolModel, body: dict[str, Any]) -> None:
    what = f"tool {tool.id}"
    require(body.get("name") == tool.name, f"{what}: name {body.get('name')!r}")
    description = body.get("description")
    require(tool.description.allows(description), f"{what}: description {description!r}")
    tool.description.settle(description)


def sort_key(item: dict[str, Any]) -> tuple[dt.datetime, str]:
    return dt.datetime.fromisoformat(item["created_at"]), item["id"]


def check_journal(block: BlockModel, value: str) -> None:
    """The journal holds exactly the tokens of committed turns, each once."""
    what = f"journal {block.id}"
    tokens = [line for line in value.split("\n") if line]
    check_code_lines(what, block, tokens)
    require(len(tokens) == len(set(tokens)), f"{what}: a token recorded twice: {tokens}")
    present = set(tokens)
    lost = block.tokens_certain - present
    require(not lost, f"{what}: acknowledged tokens lost: {sorted(lost)}")
    strangers = present - block.tokens_certain - block.tokens_maybe - block.tokens_pending
    require(not strangers, f"{what}: tokens no turn wrote: {sorted(strangers)}")
    # A turn that is over either committed its token or never will: settle.
    if settling():
        block.tokens_certain = present
        block.tokens_maybe.clear()


def check_code_lines(what: str, block: BlockModel, lines: list[str]) -> None:
    """What each code call of the journal's turns left: a prefix of its tokens (the calls
    its code got to make before any crash), each once, in order, one after the other (one
    step wrote them); all of them once it returned success in an acknowledged turn."""
    at: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        at.setdefault(line, []).append(index)
    for call_id, call in block.code_calls.items():
        left = [line for line in lines if line in call.tokens]
        twice = sorted({line for line in left if len(at[line]) > 1})
        require(not twice, f"{what}: code call {call_id} committed {twice} more than once: {left}")
        positions = [at[line][0] if line in at else None for line in call.tokens]
        reached = len(left)
        first = positions[0]
        expected = [] if first is None else list(range(first, first + reached))
        require(
            positions[:reached] == expected,
            f"{what}: code call {call_id} left {left} of {list(call.tokens)}: not a prefix"
            " of its lines, in order, one after the other",
        )
        require(
            call.status != "success" or reached == len(call.tokens),
            f"{what}: code call {call_id} returned success but left only {left} of"
            f" {list(call.tokens)}",
        )

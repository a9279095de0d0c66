"""Invariant checks for working memory and block history.

Working memory: a read must show a value some write may have left, visible only if the
key may not have expired at the server's reading of the clock, absent only if no write set
it, a delete removed it, or it may have expired (or been purged after expiring). Times are
bounded with the simulated clock's wall range, since clock jumps move the server's clock
while requests are in flight.

Block history: entries are numbered without gaps, each one's old side is the previous
one's new side, the first one's old value is the block's value at creation, the last one's
new value is the block's value now, and the entries since the last read are exactly the
acknowledged writes among the writes since then, in order (unacknowledged ones may or may
not be there; a write of the value the block already held leaves none).
"""

import datetime as dt
import itertools
import json
from collections.abc import Sequence
from typing import Any, Final

from kelpie.schemas import BLOCK_HISTORY_ENTRIES_MAX, datetime_from_us, us_from_datetime
from kelpie.sim._checks import require
from kelpie.sim._clock import SimClock
from kelpie.sim._model import BlockModel, HistoryExpectation, KeyState, Known

_US_PER_S: Final = 1_000_000


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _expiry_range(clock: SimClock, state: KeyState) -> tuple[int, int] | None:
    if state.ttl_s is None:
        return None
    low, high = clock.wall_range_us(state.sent_s, state.done_s)
    return low + state.ttl_s * _US_PER_S, high + state.ttl_s * _US_PER_S


def _may_show(clock: SimClock, state: KeyState | None, body: Any, read_since_s: float) -> bool:
    """Whether a read sent at `read_since_s` may have returned `body` for this state."""
    if state is None or canonical(body["value"]) != state.value:
        return False
    expiry = _expiry_range(clock, state)
    if expiry is None:
        return body["expires_at"] is None
    expires_at = body["expires_at"]
    if expires_at is None:
        return False
    low, high = expiry
    shown = _iso_us(expires_at)
    read_low, _ = clock.wall_range_us(read_since_s)
    return low <= shown <= high and read_low < shown


def _may_hide(clock: SimClock, state: KeyState | None) -> bool:
    """Whether the key may be invisible now: never set, deleted, expired, or purged."""
    if state is None:
        return True
    expiry = _expiry_range(clock, state)
    if expiry is None:
        return False
    _, high_since_write = clock.wall_range_us(state.sent_s)
    return high_since_write >= expiry[0]


def _iso_us(text: str) -> int:
    return us_from_datetime(dt.datetime.fromisoformat(text))


def check_key(
    what: str,
    known: Known[KeyState | None],
    body: Any | None,
    clock: SimClock,
    read_since_s: float,
) -> None:
    """Checks one read of a key (`body` the entry, None when the read found none) and
    narrows the model to the states that read leaves possible."""
    if body is None:
        fits = known.narrow(lambda state: _may_hide(clock, state))
    else:
        fits = known.narrow(lambda state: _may_show(clock, state, body, read_since_s))
    require(fits, f"working memory {what}: read {body!r}, model {known}, {_now(clock)}")


def _now(clock: SimClock) -> str:
    return f"server clock now {datetime_from_us(clock.now_us()).isoformat()}"


# Block history -----------------------------------------------------------------------------


def check_history_shape(block: BlockModel, entries: Sequence[Any], value: str) -> None:
    """What holds for any block's history, read in ascending seq order along with the
    block's current `value`."""
    what = f"history of block {block.id}"
    require(len(entries) <= BLOCK_HISTORY_ENTRIES_MAX, f"{what}: {len(entries)} entries kept")
    seqs = [entry["seq"] for entry in entries]
    require(seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True, f"{what}: {seqs}")
    for older, newer in itertools.pairwise(entries):
        require(newer["old"] == older["new"], f"{what}: entry {newer['seq']} does not follow on")
    if entries and entries[0]["seq"] == 1:
        first = entries[0]["old"]["value"]
        require(first == block.initial_value, f"{what}: starts from {first!r}")
    last = entries[-1]["new"]["value"] if entries else block.initial_value
    require(last == value, f"{what}: ends at {last!r} but the block holds {value!r}")


def check_history(block: BlockModel, entries: Sequence[Any], value: str) -> None:
    """A non-journal block's history against the writes the client sent, then settled to
    what the read showed."""
    check_history_shape(block, entries, value)
    what = f"history of block {block.id}"
    known_last = max(block.history_seqs, default=0)
    for entry in entries:
        seen = block.history_seqs.get(entry["seq"])
        sides = (entry["old"]["value"], entry["new"]["value"])
        require(seen is None or seen == sides, f"{what}: entry {entry['seq']} changed")
    fresh = [entry for entry in entries if entry["seq"] > known_last]
    dropped = bool(fresh) and fresh[0]["seq"] > known_last + 1
    if not dropped:
        observed = tuple((entry["source"], entry["new"]["value"]) for entry in fresh)
        require(
            _matches(observed, block.history),
            f"{what}: entries {observed} are not the acknowledged writes {block.history}",
        )
    block.history_seqs = {
        entry["seq"]: (entry["old"]["value"], entry["new"]["value"]) for entry in entries
    }
    block.history.clear()


def _matches(observed: Sequence[tuple[str, str]], expected: Sequence[HistoryExpectation]) -> bool:
    """Whether `observed` is `expected` with some uncertain writes left out: fits[i][j]
    says whether observed[i:] is what expected[j:] may have left."""
    rows, columns = len(observed), len(expected)
    fits = [[False] * (columns + 1) for _ in range(rows + 1)]
    fits[rows][columns] = True
    for j in range(columns - 1, -1, -1):
        fits[rows][j] = fits[rows][j + 1] and not expected[j].certain
    for i in range(rows - 1, -1, -1):
        for j in range(columns - 1, -1, -1):
            write = expected[j]
            same = observed[i] == (write.source, write.value)
            fits[i][j] = (same and fits[i + 1][j + 1]) or (not write.certain and fits[i][j + 1])
    return fits[0][0]


def check_journal_history(block: BlockModel, entries: Sequence[Any], value: str) -> None:
    """A journal's entries are its turns' memory_insert calls, one token each, in the
    journal's order, each naming the call that wrote it (for the calls a turn's code made,
    its run_code_with_tools call)."""
    check_history_shape(block, entries, value)
    what = f"history of journal {block.id}"
    by_code = {line: call_id for call_id, call in block.code_calls.items() for line in call.tokens}
    tokens: list[str] = []
    for entry in entries:
        old = set(entry["old"]["value"].split("\n"))
        added = [line for line in entry["new"]["value"].split("\n") if line not in old]
        require(len(added) == 1, f"{what}: entry {entry['seq']} added {added}")
        require(entry["source"] == "tool", f"{what}: entry {entry['seq']} by {entry['source']}")
        require(
            entry["tool_call_id"] == by_code.get(added[0], f"call-{added[0]}"),
            f"{what}: entry {entry['seq']} names call {entry['tool_call_id']}",
        )
        tokens.append(added[0])
    lines = [line for line in value.split("\n") if line]
    complete = not entries or entries[0]["seq"] == 1
    kept = lines if complete else lines[len(lines) - len(tokens) :]
    require(kept == tokens, f"{what}: entries add {tokens}, the journal holds {lines}")

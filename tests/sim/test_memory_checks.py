"""The simulator's working-memory and block-history checks: what they accept and what they
reject, and that a run really drives the operations they check."""

import collections
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest

from kelpie.sim import FaultPlan, SimClock, run_simulation, running_sim_loop
from kelpie.sim._checks import InvariantBroken
from kelpie.sim._memory_checks import canonical, check_history, check_key
from kelpie.sim._model import BlockModel, HistoryExpectation, KeyState, Known
from kelpie.sim._run import _simulate

EPOCH_US: Final = 1_000_000_000_000


def _in_sim(main: Callable[[SimClock], Awaitable[Any]]) -> Any:
    async def wrapped() -> Any:
        return await main(SimClock(running_sim_loop(), epoch_us=EPOCH_US))

    return run_simulation(wrapped, seed=1)


def _entry(value: Any, expires_at: str | None = None) -> dict[str, Any]:
    return {"key": "k", "value": value, "expires_at": expires_at}


def _iso(us: int) -> str:
    from kelpie.schemas import datetime_from_us

    return datetime_from_us(us).isoformat()


class TestCheckKey:
    def test_a_key_without_ttl_must_stay_visible(self) -> None:
        async def main(clock: SimClock) -> None:
            known: Known[KeyState | None] = Known(KeyState(canonical({"a": 1}), sent_s=0.0))
            await clock.sleep(3600)
            check_key("k", known, _entry({"a": 1}), clock, 0.0)
            with pytest.raises(InvariantBroken, match="working memory k"):
                check_key("k", known, None, clock, 0.0)

        _in_sim(main)

    def test_a_ttl_key_may_vanish_only_once_it_may_have_expired(self) -> None:
        async def main(clock: SimClock) -> None:
            state = KeyState(canonical("v"), ttl_s=10, sent_s=0.0, done_s=0.0)
            expires = _iso(EPOCH_US + 10_000_000)
            known: Known[KeyState | None] = Known(state)
            await clock.sleep(5)
            check_key("k", known, _entry("v", expires), clock, 5.0)
            with pytest.raises(InvariantBroken):
                check_key("k", known, None, clock, 5.0)
            await clock.sleep(6)
            check_key("k", known, None, clock, 11.0)
            # Still the same state: a clock stepped back may show it again.
            assert known.value == state
            with pytest.raises(InvariantBroken):
                check_key("k", known, _entry("v", expires), clock, 11.0)

        _in_sim(main)

    def test_a_read_settles_between_a_write_that_may_have_landed_and_the_one_before(
        self,
    ) -> None:
        async def main(clock: SimClock) -> None:
            old, new = KeyState(canonical(1)), KeyState(canonical(2))
            known: Known[KeyState | None] = Known(old)
            known.intend(new)
            check_key("k", known, _entry(2), clock, 0.0)
            assert (known.value, known.maybe) == (new, [])
            with pytest.raises(InvariantBroken):
                check_key("k", known, _entry(1), clock, 0.0)

        _in_sim(main)


def _entries(*values: tuple[str, str]) -> list[dict[str, Any]]:
    """History entries from (source, new value) pairs, chained from 'v0'."""
    entries, old = [], "v0"
    for seq, (source, value) in enumerate(values, start=1):
        version = {"label": "notes", "description": None, "limit": 100}
        entries.append(
            {
                "seq": seq,
                "source": source,
                "old": {**version, "value": old},
                "new": {**version, "value": value},
            }
        )
        old = value
    return entries


def _block(*expected: HistoryExpectation) -> BlockModel:
    block = BlockModel(id="b", label="notes", limit=100, exists=Known(True), value=Known("v0"))
    block.initial_value = "v0"
    block.history = list(expected)
    return block


class TestCheckHistory:
    def test_acknowledged_writes_in_order_pass_and_settle(self) -> None:
        block = _block(HistoryExpectation("api", "v1", True), HistoryExpectation("api", "v2", True))
        check_history(block, _entries(("api", "v1"), ("api", "v2")), "v2")
        assert block.history == []
        assert block.history_seqs == {1: ("v0", "v1"), 2: ("v1", "v2")}

    def test_an_unacknowledged_write_may_be_missing_an_acknowledged_one_may_not(self) -> None:
        maybe = HistoryExpectation("api", "v1", False)
        certain = HistoryExpectation("restore", "v2", True)
        check_history(_block(maybe, certain), _entries(("restore", "v2")), "v2")
        with pytest.raises(InvariantBroken, match="acknowledged writes"):
            check_history(_block(maybe, certain), _entries(("api", "v1")), "v1")

    @pytest.mark.parametrize(
        ("entries", "value", "problem"),
        [
            (_entries(("api", "v1")), "v9", "ends at"),
            (_entries(("api", "v2"), ("api", "v1")), "v1", "acknowledged writes"),
            ([], "v1", "ends at"),
        ],
    )
    def test_a_history_that_does_not_match_is_caught(
        self, entries: list[dict[str, Any]], value: str, problem: str
    ) -> None:
        block = _block(
            HistoryExpectation("api", "v1", True), HistoryExpectation("api", "v2", False)
        )
        with pytest.raises(InvariantBroken, match=problem):
            check_history(block, entries, value)

    def test_a_broken_chain_is_caught(self) -> None:
        entries = _entries(("api", "v1"), ("api", "v2"))
        entries[1]["old"]["value"] = "elsewhere"
        block = _block(HistoryExpectation("api", "v1", True), HistoryExpectation("api", "v2", True))
        with pytest.raises(InvariantBroken, match="does not follow on"):
            check_history(block, entries, "v2")


def test_a_run_drives_working_memory_and_history_operations() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trace, _, failure = run_simulation(
            lambda: _simulate(7, FaultPlan.none(), 300, 3, Path(tmp), None), seed=7
        )
    assert failure is None, failure
    outcomes = collections.Counter(" ".join(line.split()[2:4]) for line in trace.lines)
    for operation in ("wm_set 200", "wm_get 200", "wm_list 200", "block_history 200"):
        assert outcomes[operation] > 0, (operation, outcomes)
    assert outcomes["restore_block 200"] + outcomes["wm_delete 200"] > 0, outcomes

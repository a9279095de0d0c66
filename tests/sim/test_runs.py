"""Background runs under simulation (issue 5): runs whose process crashes are ended at
start-up with a stored end, stored events are never lost or changed, and a stream resumed
from any seq id is exact. The invariants live in kelpie/sim/_streams.py; these tests show
the workload reaches them under crashes."""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path
from typing import Final

import pytest

from kelpie.sim import FaultPlan, run_seed, run_simulation
from kelpie.sim._run import _simulate

SEEDS: Final = range(1, 9)
# Crashes and storage faults heavy enough that runs are cut off mid-stream.
CRASH_PLAN: Final = FaultPlan(crash=0.03, storage_write_failure=0.02, storage_latency=0.05)


def _outcomes(seed: int) -> tuple[collections.Counter[str], int]:
    """What each operation answered in one run, and how many crashes it had."""
    with tempfile.TemporaryDirectory() as tmp:
        trace, crashes, failure = run_simulation(
            lambda: _simulate(seed, CRASH_PLAN, 120, 3, Path(tmp), None), seed=seed
        )
    assert failure is None, f"DST_SEED={seed}: {failure}"
    return collections.Counter(" ".join(line.split()[2:4]) for line in trace.lines), crashes


@pytest.mark.parametrize("seed", SEEDS)
def test_background_runs_keep_their_invariants_through_crashes(seed: int) -> None:
    result = run_seed(seed, steps=120, plan=CRASH_PLAN)

    assert result.ok, f"DST_SEED={seed}: {result.failure}"


def test_the_workload_streams_resumes_and_audits_runs_across_crashes() -> None:
    seen: collections.Counter[str] = collections.Counter()
    crashes = 0
    for seed in SEEDS:
        outcomes, crashed = _outcomes(seed)
        seen += outcomes
        crashes += crashed
    assert crashes > 0
    for operation in ("send_background 200", "resume_stream 200", "audit_stream 200"):
        assert seen[operation] > 0, (operation, seen)
    assert seen["retry_background 200"] > 0, seen

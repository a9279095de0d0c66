"""The simulation harness: same seed, same run; different seeds, different runs; and it
catches the bugs it exists to catch."""

import os
import subprocess
import sys
from typing import Final

import pytest

from kelpie.sim import FaultPlan, run_seed
from kelpie.sim._planted import PLANTED_BUGS, PLANTED_SANDBOX_BUGS

SEEDS_TO_CATCH_PLANTED_BUG_MAX: Final = 20
# What each planted bug's failure talks about.
PLANTED_BUG_SUBJECTS: Final = {
    "lost_block_edit": "block",
    "ack_before_commit": "block",
    "stale_block_cache": "block",
    "lost_working_memory_write": "working memory",
    "stale_block_history": "history of",
    "deferred_passages": "passage",
    "unended_streams": "run",
}
PLANTED_SANDBOX_BUG_SUBJECTS: Final = {
    "pool_never_refills": "sandbox pool",
    "code_call_twice": "code call",
    "session_forgets_when_paused": "session",
}
SWEEP_SEEDS_CI: Final = range(1, 101)
# Replaying a failing seed: `DST_SEED=N pytest tests/sim -k sweep` runs just that seed.
SWEEP_SEEDS: Final = (
    [int(os.environ["DST_SEED"])] if os.environ.get("DST_SEED") else list(SWEEP_SEEDS_CI)
)


def test_run_same_seed_gives_same_trace_hash() -> None:
    first = run_seed(11, steps=60)
    second = run_seed(11, steps=60)
    assert first.ok, first.failure
    assert first.trace_hash == second.trace_hash
    assert first.operations == second.operations


def test_run_different_seeds_give_different_traces() -> None:
    hashes = {run_seed(seed, steps=40).trace_hash for seed in (1, 2, 3)}
    assert len(hashes) == 3


def _trace_hash_in_process(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    completed = subprocess.run(
        [sys.executable, "-m", "kelpie.sim", "--seed", "5", "--steps", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    last_line = completed.stdout.strip().splitlines()[-1]
    assert last_line.startswith("trace_hash=")
    return last_line


def test_trace_hash_is_stable_across_pythonhashseed_values() -> None:
    assert _trace_hash_in_process("1") == _trace_hash_in_process("4242")


def test_run_under_heavy_faults_keeps_every_invariant() -> None:
    plan = FaultPlan(
        storage_write_failure=0.05,
        storage_read_failure=0.05,
        storage_latency=0.1,
        crash=0.03,
        clock_jump=0.05,
    )
    result = run_seed(3, steps=200, plan=plan)
    assert result.ok, result.failure
    assert result.crashes >= 2


def test_every_planted_bug_names_its_subject() -> None:
    assert set(PLANTED_BUG_SUBJECTS) == set(PLANTED_BUGS)
    assert set(PLANTED_SANDBOX_BUG_SUBJECTS) == set(PLANTED_SANDBOX_BUGS)


@pytest.mark.parametrize("bug", sorted(PLANTED_SANDBOX_BUGS))
def test_planted_sandbox_bug_is_caught_within_bounded_seeds(bug: str) -> None:
    plan = FaultPlan(crash=0.02, sandbox_crash=0.2, sandbox_timeout=0.1)
    factory = PLANTED_SANDBOX_BUGS[bug]
    for seed in range(1, SEEDS_TO_CATCH_PLANTED_BUG_MAX + 1):
        result = run_seed(seed, steps=100, plan=plan, sandbox_factory=factory)
        if not result.ok:
            print(f"planted bug {bug} caught by seed {seed}: {result.failure}")  # noqa: T201
            assert result.failure is not None
            assert PLANTED_SANDBOX_BUG_SUBJECTS[bug] in result.failure
            replay = run_seed(seed, steps=100, plan=plan, sandbox_factory=factory)
            assert replay.failure == result.failure
            assert replay.trace_hash == result.trace_hash
            return
    pytest.fail(f"{bug} survived {SEEDS_TO_CATCH_PLANTED_BUG_MAX} seeds")


def test_custom_tools_under_sandbox_faults_and_crashes_keep_every_invariant() -> None:
    plan = FaultPlan(
        sandbox_crash=0.2,
        sandbox_timeout=0.15,
        sandbox_slow_start=0.2,
        llm_malformed=0.05,
        storage_write_failure=0.02,
        crash=0.02,
    )
    for seed in (1, 2, 4):
        result = run_seed(seed, steps=150, plan=plan)
        assert result.ok, f"replay with DST_SEED={seed}: {result.failure}"


@pytest.mark.parametrize("bug", sorted(PLANTED_BUGS))
def test_planted_bug_is_caught_within_bounded_seeds(bug: str) -> None:
    plan = FaultPlan(crash=0.03)
    for seed in range(1, SEEDS_TO_CATCH_PLANTED_BUG_MAX + 1):
        result = run_seed(seed, steps=100, plan=plan, store_wrapper=PLANTED_BUGS[bug])
        if not result.ok:
            # The seed that replays it, shown with -s and in failure reports.
            print(f"planted bug {bug} caught by seed {seed}: {result.failure}")  # noqa: T201
            assert result.failure is not None
            assert PLANTED_BUG_SUBJECTS[bug] in result.failure
            replay = run_seed(seed, steps=100, plan=plan, store_wrapper=PLANTED_BUGS[bug])
            assert replay.failure == result.failure
            assert replay.trace_hash == result.trace_hash
            return
    pytest.fail(f"{bug} survived {SEEDS_TO_CATCH_PLANTED_BUG_MAX} seeds")


def test_cli_exits_nonzero_and_prints_replay_when_an_invariant_breaks() -> None:
    completed = subprocess.run(
        [
            *[sys.executable, "-m", "kelpie.sim", "--seed", "1", "--steps", "100"],
            *["--faults", "none", "--plant", "stale_block_cache"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1
    assert "FAILED" in completed.stdout
    assert completed.stdout.strip().splitlines()[-1].startswith("trace_hash=")


@pytest.mark.parametrize("seed", SWEEP_SEEDS)
def test_sweep_seed_keeps_every_invariant(seed: int) -> None:
    result = run_seed(seed, steps=100)
    assert result.ok, f"replay with DST_SEED={seed}: {result.failure}"


def test_turns_under_llm_and_storage_faults_and_crashes_keep_every_invariant() -> None:
    plan = FaultPlan(
        llm_timeout=0.05,
        llm_rate_limit=0.05,
        llm_error=0.05,
        llm_malformed=0.1,
        llm_empty=0.05,
        storage_write_failure=0.03,
        crash=0.03,
    )
    for seed in (21, 22, 23):
        result = run_seed(seed, steps=200, plan=plan)
        assert result.ok, f"replay with DST_SEED={seed}: {result.failure}"
        assert result.crashes >= 1

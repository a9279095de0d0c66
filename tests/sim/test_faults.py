"""Fault plans and injectors: parsed, drawn and applied deterministically."""

import pytest

from kelpie.env import Entropy
from kelpie.llm import LlmRateLimited, LlmTimeout
from kelpie.sim import FaultPlan
from kelpie.sim._llm import LlmFaultInjector
from kelpie.sim._store import READ_OPERATIONS, WRITE_OPERATIONS, store_operations


def test_fault_plan_parse_reads_kinds_and_probabilities() -> None:
    plan = FaultPlan.parse("crash=0.01,storage_read_failure=0.5")
    assert plan.crash == 0.01
    assert plan.storage_read_failure == 0.5
    assert plan.describe() == "storage_read_failure=0.5, crash=0.01"


def test_fault_plan_parse_reads_sandbox_kinds() -> None:
    plan = FaultPlan.parse("sandbox_crash=0.1,sandbox_timeout=0.2,sandbox_slow_start=0.3")
    assert (plan.sandbox_crash, plan.sandbox_timeout, plan.sandbox_slow_start) == (0.1, 0.2, 0.3)
    assert plan.describe() == "sandbox_crash=0.1, sandbox_timeout=0.2, sandbox_slow_start=0.3"


def test_drawn_plans_include_sandbox_faults() -> None:
    plans = [FaultPlan.draw(Entropy(seed).fork("plan")) for seed in range(40)]
    assert any(plan.sandbox_crash for plan in plans)
    assert any(plan.sandbox_timeout for plan in plans)
    assert any(plan.sandbox_slow_start for plan in plans)


def test_fault_plan_parse_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        FaultPlan.parse("meteor=1")


def test_fault_plan_none_describes_itself() -> None:
    assert FaultPlan.parse("none").describe() == "none"


def test_fault_plan_draw_is_a_function_of_the_seed() -> None:
    assert FaultPlan.draw(Entropy(9).fork("plan")) == FaultPlan.draw(Entropy(9).fork("plan"))
    drawn = {FaultPlan.draw(Entropy(seed).fork("plan")) for seed in range(20)}
    assert len(drawn) > 10


def test_every_store_operation_is_classified_read_or_write() -> None:
    assert store_operations() - READ_OPERATIONS - WRITE_OPERATIONS == {"close"}
    assert not READ_OPERATIONS & WRITE_OPERATIONS


def test_llm_injector_draws_faults_at_the_planned_rate() -> None:
    injector = LlmFaultInjector(FaultPlan(llm_timeout=0.2), Entropy(3))
    draws = [injector.draw() for _ in range(2000)]
    timeouts = draws.count("llm_timeout")
    assert 300 < timeouts < 500
    assert set(draws) == {None, "llm_timeout"}


def test_llm_injector_raises_the_translated_errors() -> None:
    injector = LlmFaultInjector(FaultPlan(), Entropy(3))
    assert injector.draw() is None
    with pytest.raises(LlmTimeout):
        injector.raise_error("llm_timeout")
    with pytest.raises(LlmRateLimited):
        injector.raise_error("llm_rate_limit")

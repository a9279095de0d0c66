"""The activation table's counts that the metrics read: activations and put-aways."""

import asyncio

from kelpie.runtime import AgentRuntime


class FakeClock:
    def now_us(self) -> int:
        return 0

    def monotonic_s(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


def test_put_away_activations_are_counted() -> None:
    clock = FakeClock()
    actors = AgentRuntime(clock, active_max=1, idle_timeout_s=60.0)

    async def scenario() -> None:
        for agent_id, run_id in (("agent-a", "run-1"), ("agent-b", "run-2"), ("agent-a", "run-3")):
            async with actors.turn(agent_id, None, run_id):
                pass

    asyncio.run(scenario())

    assert actors.activations_total == 3
    assert actors.deactivations_total == 2
    assert actors.active_count == 1
    assert actors.activations_total - actors.deactivations_total == actors.active_count

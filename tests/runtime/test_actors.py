"""The activation table: one activation per agent, serialised turns, bounded mailbox,
idle deactivation and the active cap."""

import asyncio

import pytest

from kelpie.runtime import MAILBOX_DEPTH_MAX, AgentRuntime, ConversationBusy, MailboxFull


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def now_us(self) -> int:
        return int(self.now_s * 1_000_000)

    def monotonic_s(self) -> float:
        return self.now_s

    async def sleep(self, seconds: float) -> None:
        self.now_s += seconds


def runtime(
    clock: FakeClock, *, active_max: int = 10, idle_timeout_s: float = 60.0
) -> AgentRuntime:
    return AgentRuntime(clock, active_max=active_max, idle_timeout_s=idle_timeout_s)


def test_turn_activates_the_agent_once() -> None:
    actors = runtime(FakeClock())

    async def scenario() -> None:
        async with actors.turn("agent-a", None, "run-1") as first:
            assert actors.activation("agent-a") is first
        async with actors.turn("agent-a", "conv-x", "run-2") as second:
            assert second is first

    asyncio.run(scenario())
    assert actors.activations_total == 1
    assert actors.active_count == 1


def test_second_turn_on_a_busy_conversation_is_refused_with_letta_wording() -> None:
    actors = runtime(FakeClock())

    async def scenario() -> None:
        async with actors.turn("agent-a", None, "run-1"):
            with pytest.raises(ConversationBusy) as refused:
                async with actors.turn("agent-a", None, "run-2"):
                    pass
            assert refused.value.run_id == "run-1"
            assert "is currently being processed" in refused.value.detail
            assert "(run_id=run-1)" in refused.value.detail
            async with actors.turn("agent-a", "conv-other", "run-3"):
                assert sorted(actors.running_runs("agent-a")) == ["run-1", "run-3"]
        async with actors.turn("agent-a", None, "run-4"):
            pass

    asyncio.run(scenario())


def test_mailbox_is_bounded() -> None:
    actors = runtime(FakeClock())

    async def scenario() -> None:
        async with contextlib_stack(actors, MAILBOX_DEPTH_MAX):
            with pytest.raises(MailboxFull):
                async with actors.turn("agent-a", "conv-overflow", "run-overflow"):
                    pass

    asyncio.run(scenario())


def contextlib_stack(actors: AgentRuntime, count: int) -> "AsyncStack":
    return AsyncStack(actors, count)


class AsyncStack:
    def __init__(self, actors: AgentRuntime, count: int) -> None:
        self._actors = actors
        self._count = count
        self._managers: list[object] = []

    async def __aenter__(self) -> None:
        for index in range(self._count):
            manager = self._actors.turn("agent-a", f"conv-{index}", f"run-{index}")
            await manager.__aenter__()
            self._managers.append(manager)

    async def __aexit__(self, *exc: object) -> None:
        for manager in reversed(self._managers):
            await manager.__aexit__(None, None, None)  # type: ignore[attr-defined]  # the turn() managers


def test_idle_activations_are_put_away_after_the_timeout() -> None:
    clock = FakeClock()
    actors = runtime(clock, idle_timeout_s=60.0)

    async def scenario() -> None:
        async with actors.turn("agent-a", None, "run-1"):
            pass
        clock.now_s += 61
        async with actors.turn("agent-b", None, "run-2"):
            pass

    asyncio.run(scenario())
    assert actors.activation("agent-a") is None
    assert actors.activation("agent-b") is not None


def test_cap_puts_away_the_least_recently_used_idle_agent() -> None:
    clock = FakeClock()
    actors = runtime(clock, active_max=2)

    async def scenario() -> None:
        for agent in ("agent-a", "agent-b"):
            async with actors.turn(agent, None, f"run-{agent}"):
                clock.now_s += 1
        async with actors.turn("agent-a", None, "run-again"):
            pass
        async with actors.turn("agent-c", None, "run-c"):
            pass

    asyncio.run(scenario())
    assert actors.active_count == 2
    assert actors.activation("agent-b") is None
    assert actors.activation("agent-a") is not None


def test_busy_activation_is_never_put_away() -> None:
    clock = FakeClock()
    actors = runtime(clock, active_max=1, idle_timeout_s=1.0)

    async def scenario() -> None:
        async with actors.turn("agent-a", None, "run-a"):
            clock.now_s += 10
            async with actors.turn("agent-b", None, "run-b"):
                assert actors.activation("agent-a") is not None

    asyncio.run(scenario())


def test_cancel_flags_only_running_runs() -> None:
    actors = runtime(FakeClock())

    async def scenario() -> None:
        async with actors.turn("agent-a", None, "run-1") as activation:
            cancelled = activation.cancel_event("run-1")
            assert actors.cancel("agent-a", ["run-unknown"]) == []
            assert not cancelled.is_set()
            assert actors.cancel("agent-a", None) == ["run-1"]
            assert cancelled.is_set()
        assert actors.cancel("agent-a", None) == []


def test_cancel_of_one_conversation_leaves_the_others_running() -> None:
    actors = runtime(FakeClock())

    async def scenario() -> None:
        async with (
            actors.turn("agent-a", None, "run-default") as activation,
            actors.turn("agent-a", "conv-1", "run-conv"),
        ):
            stopped = actors.cancel(
                "agent-a", None, conversation_id="conv-1", any_conversation=False
            )
            assert stopped == ["run-conv"]
            assert activation.cancel_event("run-conv").is_set()
            assert not activation.cancel_event("run-default").is_set()

    asyncio.run(scenario())

    asyncio.run(scenario())

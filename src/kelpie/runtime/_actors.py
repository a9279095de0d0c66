"""The activation table. An activation is the in-memory presence of one agent: which of
its conversations has a turn in progress (and which run), and the cancel flags of its
runs. State that must survive lives in the store; dropping an activation loses nothing."""

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Final, final

from kelpie.agent import ThreadContext
from kelpie.env import Clock
from kelpie.errors import Conflict, Unavailable

ACTIVE_AGENTS_MAX_DEFAULT: Final = 10_000
IDLE_TIMEOUT_S_DEFAULT: Final = 300.0
# Turns in progress on one agent at once (one per conversation); more are refused.
MAILBOX_DEPTH_MAX: Final = 64
DEFAULT_CONVERSATION: Final = "default"
# Busy activations a put-away scan steps over before it gives up until the next activation.
PUT_AWAY_SCAN_BUSY_MAX: Final = 1_000
# What the kept thread contexts of all activations may take (estimated); past it, idle
# activations are put away, least recently used first, as when over the count cap.
CONTEXT_BYTES_MAX_DEFAULT: Final = 256 * 1024 * 1024


class ConversationBusy(Conflict):
    """Letta's 409 for a second send while a turn runs; letta-code matches the wording."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"Cannot send a new message: Another request (run_id={run_id}) is currently being"
            " processed for this conversation. Please wait for it to complete."
        )
        self.run_id = run_id


class MailboxFull(Unavailable):
    pass


@final
@dataclasses.dataclass
class Activation:
    agent_id: str
    last_used_s: float
    # conversation key -> run id of the turn in progress
    turns: dict[str, str] = dataclasses.field(default_factory=dict)
    # run id -> set when the run is cancelled (its turn stops at once)
    cancels: dict[str, asyncio.Event] = dataclasses.field(default_factory=dict)
    # conversation key -> the thread's in-context messages, kept between turns, with the
    # size they were counted at (see AgentRuntime.keep_context)
    contexts: dict[str, tuple[ThreadContext, int]] = dataclasses.field(default_factory=dict)

    @property
    def context_bytes(self) -> int:
        return sum(size for _, size in self.contexts.values())

    @property
    def idle(self) -> bool:
        return not self.turns

    def cancel_event(self, run_id: str) -> asyncio.Event:
        assert run_id in self.turns.values(), "cancel event of a run not in progress"
        return self.cancels.setdefault(run_id, asyncio.Event())


@final
class AgentRuntime:
    def __init__(
        self,
        clock: Clock,
        *,
        active_max: int = ACTIVE_AGENTS_MAX_DEFAULT,
        idle_timeout_s: float = IDLE_TIMEOUT_S_DEFAULT,
        context_bytes_max: int = CONTEXT_BYTES_MAX_DEFAULT,
    ) -> None:
        assert active_max >= 1, "active cap must be positive"
        self._context_bytes_max = context_bytes_max
        self.context_bytes = 0  # kept thread contexts of all activations, estimated
        self._clock = clock
        self._active_max = active_max
        self._idle_timeout_s = idle_timeout_s
        # Least recently used first.
        self._active: collections.OrderedDict[str, Activation] = collections.OrderedDict()
        self._evicting: list[str] = []
        self.activations_total = 0
        self.deactivations_total = 0

    @property
    def active_count(self) -> int:
        return len(self._active)

    def activation(self, agent_id: str) -> Activation | None:
        return self._active.get(agent_id)

    def _activate(self, agent_id: str) -> Activation:
        now = self._clock.monotonic_s()
        activation = self._active.get(agent_id)
        if activation is None:
            activation = Activation(agent_id=agent_id, last_used_s=now)
            self._active[agent_id] = activation
            self.activations_total += 1
        activation.last_used_s = now
        self._active.move_to_end(agent_id)
        self._put_away(now, keep=agent_id)
        assert self._active[agent_id] is activation, "one activation per agent"
        return activation

    def _put_away(self, now: float, *, keep: str) -> None:
        """Deactivates idle activations past the timeout, then least-recently-used idle
        ones while over the cap. Busy activations, and `keep` (being activated), stay; the
        cap may be exceeded while every other activation is busy.

        The table is in order of last use, so the scan stops at the first activation that
        is neither expired nor over the cap: a hot activation costs O(1), not O(active)."""
        passed: list[str] = []  # busy ones, skipped
        freed = 0  # context bytes of the ones chosen so far
        for agent_id, activation in self._active.items():
            if agent_id == keep or not activation.idle:
                passed.append(agent_id)
                if len(passed) > PUT_AWAY_SCAN_BUSY_MAX:
                    break
                continue
            over_cap = len(self._active) - len(self._evicting) > self._active_max
            over_bytes = self.context_bytes - freed > self._context_bytes_max
            expired = now - activation.last_used_s > self._idle_timeout_s
            if not (over_cap or over_bytes or expired):
                break
            self._evicting.append(agent_id)
            freed += activation.context_bytes
        for agent_id in self._evicting:
            # Put away, its kept contexts go with it (their memory is freed).
            self.context_bytes -= self._active.pop(agent_id).context_bytes
        self.deactivations_total += len(self._evicting)
        self._evicting.clear()

    @contextlib.asynccontextmanager
    async def turn(
        self, agent_id: str, conversation_id: str | None, run_id: str
    ) -> AsyncIterator[Activation]:
        """Holds the conversation for one turn; a concurrent turn gets ConversationBusy."""
        activation = self._activate(agent_id)
        key = conversation_id or DEFAULT_CONVERSATION
        running = activation.turns.get(key)
        if running is not None:
            raise ConversationBusy(running)
        if len(activation.turns) >= MAILBOX_DEPTH_MAX:
            raise MailboxFull(f"Agent {agent_id} already has {MAILBOX_DEPTH_MAX} turns running")
        activation.turns[key] = run_id
        try:
            yield activation
        finally:
            assert activation.turns.get(key) == run_id, "turn released by another run"
            del activation.turns[key]
            activation.cancels.pop(run_id, None)
            activation.last_used_s = self._clock.monotonic_s()
            if agent_id in self._active:
                self._active.move_to_end(agent_id)

    def kept_context(
        self, activation: Activation, conversation_id: str | None
    ) -> ThreadContext | None:
        """The thread's in-context messages kept by the activation, if any."""
        kept = activation.contexts.get(conversation_id or DEFAULT_CONVERSATION)
        return None if kept is None else kept[0]

    def keep_context(
        self, activation: Activation, conversation_id: str | None, context: ThreadContext | None
    ) -> None:
        """Keeps (or, with None, drops) the thread's context; its size is counted anew."""
        key = conversation_id or DEFAULT_CONVERSATION
        old = activation.contexts.pop(key, None)
        if old is not None:
            self.context_bytes -= old[1]
        if context is not None:
            activation.contexts[key] = (context, context.nbytes)
            self.context_bytes += context.nbytes
            if self.context_bytes > self._context_bytes_max:
                self._put_away(self._clock.monotonic_s(), keep=activation.agent_id)

    def running_runs(self, agent_id: str) -> list[str]:
        activation = self._active.get(agent_id)
        return [] if activation is None else list(activation.turns.values())

    def cancel(
        self,
        agent_id: str,
        run_ids: list[str] | None,
        *,
        conversation_id: str | None = None,
        any_conversation: bool = True,
    ) -> list[str]:
        """Stops runs of the agent (of one conversation unless `any_conversation`) at once;
        returns the ones stopped."""
        activation = self._active.get(agent_id)
        if activation is None:
            return []
        key = conversation_id or DEFAULT_CONVERSATION
        running = [
            run_id
            for conversation, run_id in activation.turns.items()
            if any_conversation or conversation == key
        ]
        chosen = running if run_ids is None else [r for r in running if r in run_ids]
        for run_id in chosen:
            activation.cancel_event(run_id).set()
        return chosen

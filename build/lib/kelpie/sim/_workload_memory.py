"""Workload operations on working memory and block history, a mixin of the workload's
`Client`, and their audits.

Working memory: the client sets, reads, deletes and lists keys `k.0`…`k.5` of its agents
(some with a TTL, so keys expire during a run); an agent with the working-memory tools also
sets `token.<t>` in the same step as it records token t in its journal, so after any crash
an agent's token keys are exactly its journal's tokens. Block history: the client reads a
block's history against the writes it sent, and restores an entry it has seen.
"""

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from kelpie.env import Entropy
from kelpie.schemas import BLOCK_HISTORY_ENTRIES_MAX
from kelpie.sim._checks import acknowledged, check_block_body, check_exists, require
from kelpie.sim._clock import SimClock
from kelpie.sim._llm import TOKEN_KEY_PREFIX, token_key_call_id
from kelpie.sim._memory_checks import (
    canonical,
    check_history,
    check_journal_history,
    check_key,
)
from kelpie.sim._model import (
    AgentModel,
    BlockModel,
    ClientModel,
    HistoryExpectation,
    KeyState,
    Known,
)
from kelpie.sim._server import Outcome

WORKING_MEMORY_TOOLS: Final = ("working_memory_set", "working_memory_get", "working_memory_list")
_KEYS: Final = tuple(f"k.{index}" for index in range(6))
_PREFIXES: Final = ("", "k.", "k.1", TOKEN_KEY_PREFIX)
# Mostly no TTL; short ones expire within a run, an hour's within a clock jump or two.
_TTLS_S: Final = (None, None, None, 1, 5, 3600)
_WORDS: Final = ("kelp", "tide", "reef", "gull")
HISTORY_PAGE: Final = {"limit": 1000, "order": "asc"}


def working_memory_url(agent: AgentModel, key: str | None = None) -> str:
    base = f"/v1/agents/{agent.id}/working-memory"
    return base if key is None else f"{base}/{key}"


class MemoryOperations:
    """Needs the client's model, entropy, clock and request plumbing."""

    model: ClientModel
    _entropy: Entropy
    _clock: SimClock

    async def send(self, what: str, method: str, url: str, **kwargs: Any) -> Outcome:
        raise NotImplementedError

    def _pick(self, items: Sequence[Any]) -> Any:
        raise NotImplementedError

    def _existing(self, objects: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def memory_operations(self) -> list[tuple[int, Callable[[], Awaitable[None]]]]:
        return [
            (6, self.set_key),
            (4, self.get_key),
            (2, self.delete_key),
            (3, self.list_keys),
            (4, self.read_block_history),
            (2, self.restore_block),
        ]

    # Working memory ---------------------------------------------------------------------

    def _value(self) -> Any:
        word, number = self._pick(_WORDS), self._entropy.randint(0, 9)
        return self._pick(({"w": word, "n": number}, word, number, [word, word]))

    async def set_key(self) -> None:
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        if agent is None:
            return
        key, value, ttl_s = self._pick(_KEYS), self._value(), self._pick(_TTLS_S)
        known = agent.working_memory.setdefault(key, Known(None))
        state = KeyState(canonical(value), ttl_s, sent_s=self._clock.monotonic_s())
        known.intend(state)
        body = {"value": value} if ttl_s is None else {"value": value, "ttl_s": ttl_s}
        outcome = await self.send("wm_set", "PUT", working_memory_url(agent, key), json=body)
        done = dataclasses.replace(state, done_s=self._clock.monotonic_s())
        known.revise(state, done)
        if acknowledged(outcome, "wm_set", 200):
            known.acknowledge(done)
            check_key(f"{agent.id}/{key} set", known, outcome.body, self._clock, state.sent_s)

    async def get_key(self) -> None:
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        if agent is None or not agent.working_memory:
            return
        key = self._pick(sorted(agent.working_memory))
        await check_key_read(self, agent, key)

    async def delete_key(self) -> None:
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        keys = [] if agent is None else [k for k in sorted(agent.working_memory) if k in _KEYS]
        if agent is None or not keys:
            return
        key = self._pick(keys)
        known = agent.working_memory[key]
        before = Known(known.value)
        before.maybe = list(known.maybe)
        known.intend(None)
        outcome = await self.send("wm_delete", "DELETE", working_memory_url(agent, key))
        if acknowledged(outcome, "wm_delete", 200, 404):
            # Either way the key is gone now: deleted, or expired and purged by the delete.
            if outcome.status == 404:
                check_key(f"{agent.id}/{key} delete", before, None, self._clock, 0.0)
            else:
                require(
                    any(state is not None for state in before.candidates()),
                    f"wm_delete: deleted {agent.id}/{key}, model {before}",
                )
            known.acknowledge(None)

    async def list_keys(self) -> None:
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        if agent is None:
            return
        prefix, limit = self._pick(_PREFIXES), 1 + self._entropy.choice_index(7)
        order = self._pick(("asc", "desc"))
        params: dict[str, Any] = {"prefix": prefix, "limit": limit, "order": order}
        await list_all_keys(self, agent, params)

    # Block history ----------------------------------------------------------------------

    async def read_block_history(self) -> None:
        block: BlockModel | None = self._pick(self._existing(self.model.blocks))
        if block is not None:
            await check_block_and_history(self, block)

    async def restore_block(self) -> None:
        candidates = [b for b in self._existing(self.model.blocks) if not b.journal]
        block: BlockModel | None = self._pick(candidates)
        if block is None:
            return
        if block.history or not block.history_seqs:
            # Restores name entries the client has seen: read them first.
            await check_block_and_history(self, block)
        if not (block.exists.certain and block.exists.value and block.history_seqs):
            return
        # Among the newest entries: older ones may have been dropped by later writes.
        seq = self._pick(sorted(block.history_seqs)[-BLOCK_HISTORY_ENTRIES_MAX // 2 :])
        side = self._pick(("old", "new"))
        value = block.history_seqs[seq][0 if side == "old" else 1]
        url = f"/v1/blocks/{block.id}/history/{seq}/restore"
        await self.write_block(block, "restore", value, "restore_block", url, params={"side": side})

    async def write_block(
        self, block: BlockModel, source: str, value: str, what: str, url: str, **request: Any
    ) -> None:
        """Sends a write that sets the block's value to `value`; the model expects its
        history entry. `request` is the request's `json` or `params`."""
        write = expect_write(block, source, value)
        method = "PATCH" if source == "api" else "POST"
        outcome = await self.send(what, method, url, **request)
        if acknowledged(outcome, what, 200):
            acknowledge_write(block, write, value)
            check_block_body(block, outcome.body)


# Shared steps and audits ------------------------------------------------------------------


def expect_write(block: BlockModel, source: str, value: str) -> tuple[int, bool]:
    """Before a write of `value` is sent: it may leave a history entry. Returns where it
    is expected and whether it certainly changes the value (if acknowledged)."""
    changes = value not in block.value.candidates()
    block.value.intend(value)
    block.history.append(HistoryExpectation(source, value, certain=False))
    return len(block.history) - 1, changes


def acknowledge_write(block: BlockModel, write: tuple[int, bool], value: str) -> None:
    index, changes = write
    block.value.acknowledge(value)
    expected = block.history[index] if index < len(block.history) else None
    if changes and expected is not None and expected.value == value:
        block.history[index] = dataclasses.replace(expected, certain=True)


async def check_key_read(client: MemoryOperations, agent: AgentModel, key: str) -> None:
    sent_s = client._clock.monotonic_s()
    outcome = await client.send("wm_get", "GET", working_memory_url(agent, key))
    if acknowledged(outcome, "wm_get", 200, 404):
        body = outcome.body if outcome.status == 200 else None
        check_key(f"{agent.id}/{key}", agent.working_memory[key], body, client._clock, sent_s)


async def list_all_keys(
    client: MemoryOperations, agent: AgentModel, params: dict[str, Any]
) -> set[str] | None:
    """Pages through the agent's keys; checks order, prefix and every modelled key; returns
    the keys listed (None when a page failed)."""
    sent_s, listed = client._clock.monotonic_s(), list[dict[str, Any]]()
    prefix, limit = params.get("prefix", ""), params["limit"]
    while True:
        outcome = await client.send("wm_list", "GET", working_memory_url(agent), params=params)
        if not acknowledged(outcome, "wm_list", 200):
            return None
        require(len(outcome.body) <= limit, f"wm_list: page of {len(outcome.body)} over {limit}")
        if not outcome.body:
            break
        listed.extend(outcome.body)
        params = {**params, "after": outcome.body[-1]["key"]}
    keys = [entry["key"] for entry in listed]
    ordered = sorted(keys, reverse=params.get("order") == "desc")
    require(keys == ordered and len(set(keys)) == len(keys), f"wm_list: keys {keys} out of order")
    require(all(key.startswith(prefix) for key in keys), f"wm_list: {keys} outside '{prefix}'")
    strangers = set(keys) - set(agent.working_memory)
    require(not strangers, f"wm_list: keys nobody wrote: {sorted(strangers)}")
    by_key = {entry["key"]: entry for entry in listed}
    for key, known in sorted(agent.working_memory.items()):
        if key.startswith(prefix):
            check_key(f"{agent.id}/{key} listed", known, by_key.get(key), client._clock, sent_s)
    return set(keys)


async def audit_working_memory(
    client: MemoryOperations, agent: AgentModel, returns: dict[str, str] | None
) -> None:
    """Every key the model knows is read back. An agent with the tools holds a token key
    exactly when its working_memory_set call returned success in a committed step: the
    key, the call's return message and the journal entry land in one transaction."""
    keys = await list_all_keys(client, agent, {"limit": 1000, "order": "asc"})
    if keys is None or returns is None or not agent.working_memory_tools:
        return
    prefix = TOKEN_KEY_PREFIX
    held = {key.removeprefix(prefix) for key in keys if key.startswith(prefix)}
    stored = {
        key.removeprefix(prefix)
        for key in agent.working_memory
        if key.startswith(prefix)
        and returns.get(token_key_call_id(key.removeprefix(prefix))) == "success"
    }
    require(
        held == stored,
        f"agent {agent.id}: working memory holds token keys {sorted(held)} but the committed"
        f" working_memory_set calls set {sorted(stored)}",
    )


async def check_block_and_history(client: MemoryOperations, block: BlockModel) -> None:
    """Reads the block, then its history (nothing else writes it in between)."""
    outcome = await client.send("get_block", "GET", f"/v1/blocks/{block.id}")
    if not acknowledged(outcome, "get_block", 200, 404):
        return
    if not check_exists(block, outcome.status or 0, "get_block"):
        return
    check_block_body(block, outcome.body)
    value = outcome.body["value"]
    url = f"/v1/blocks/{block.id}/history"
    history = await client.send("block_history", "GET", url, params=HISTORY_PAGE)
    if not acknowledged(history, "block_history", 200):
        return
    if block.journal:
        check_journal_history(block, history.body, value)
    else:
        check_history(block, history.body, value)

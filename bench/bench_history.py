"""Server CPU of one turn as an agent's history grows (issue 15, "Endurance").

For each history length (10, 100, 1,000, 10,000 in-context messages by default) an agent
is created and its history written straight into the store in one step commit (no model
calls), then plain turns run through `MessageService` in this process with the scripted
model answering "OK" at once. Each turn's CPU time (`time.process_time`, this process:
the server's whole cost, model excluded) is taken; the table reports the median per
length and the ratio to the shortest history. Target: the cost at the longest history
within 1.5x of the cost at the shortest (until compaction, the server's own work per turn
should not depend on how long the thread is).

    .venv/bin/python bench/bench_history.py
    .venv/bin/python bench/bench_history.py --lengths 10,1000 --turns 50
    .venv/bin/python bench/bench_history.py --profile 10000   # cProfile of the turns
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import MODEL, Row, print_table, write_results
from kelpie.env import Config as KelpieConfig
from kelpie.env import Env, SystemClock, system_entropy
from kelpie.llm import LlmRequest, LlmResponse, ProviderCatalog, ScriptedProviders, Usage
from kelpie.mcp import McpConnections
from kelpie.memory import HashingEmbedder, MemorySearch
from kelpie.runtime import AgentRuntime
from kelpie.sandbox import ProcessSandbox
from kelpie.schemas import (
    MESSAGE_PREFIX,
    AgentCreate,
    BlockCreate,
    LettaRequest,
    Message,
    MessageCreate,
    datetime_from_us,
)
from kelpie.service import AgentService, MessageService, prepare
from kelpie.storage import SqliteStore, StepCommit, ThreadUpdate
from kelpie.web import HttpWeb

LENGTHS_DEFAULT = (10, 100, 1_000, 10_000)
TURNS_DEFAULT = 60
WARMUP_TURNS = 5
CONTEXT_WINDOW = 1_000_000  # far above what the histories need: no compaction
TARGET_RATIO = 1.5


def answer_ok(request: LlmRequest) -> LlmResponse:
    return LlmResponse("OK", (), "stop", Usage(prompt_tokens=1, completion_tokens=1))


def open_env(data_dir: Path) -> Env:
    config = KelpieConfig(data_dir=data_dir, openai_api_key="sk-bench-fake")
    clock = SystemClock()
    return Env(
        clock=clock,
        entropy=system_entropy(),
        config=config,
        store=SqliteStore.open(data_dir / "kelpie.db", background_checkpoints=True),
        models=ProviderCatalog(config, clock),
        llm=ScriptedProviders(answer_ok),
        embedder=HashingEmbedder(),
        sandbox=ProcessSandbox(root_dir=data_dir / "sandbox", pool_size=0),
        mcp=McpConnections(),
        web=HttpWeb(),
    )


async def grow_history(env: Env, agent_id: str, length: int) -> None:
    """`length` in-context messages (the system message included), written in one commit:
    user and assistant messages in turn, as a chat would leave them."""
    agent = await env.store.get_agent(agent_id)
    assert agent is not None
    start_us = env.clock.now_us() - 10 * (length + 10)
    messages = []
    for i in range(length - 1):
        user = i % 2 == 0
        messages.append(
            Message(
                id=env.entropy.new_id(MESSAGE_PREFIX),
                agent_id=agent_id,
                role="user" if user else "assistant",
                text=f"message {i} of the history, a few words long" if user else "OK",
                created_at=datetime_from_us(start_us + i),
            )
        )
    thread = ThreadUpdate(
        agent_id=agent_id,
        conversation_id=None,
        message_ids=(agent.message_ids[0], *(m.id for m in messages)),
        updated_at=agent.updated_at,
    )
    await env.store.commit_step(StepCommit(thread=thread, messages=tuple(messages)))


async def measure(
    workdir: Path, lengths: list[int], turns: int, profile: int | None
) -> dict[int, list[float]]:
    env = open_env(workdir)
    results: dict[int, list[float]] = {}
    try:
        await prepare(env)
        agents = AgentService(env)
        search = MemorySearch(env.store, env.embedder, env.clock)
        service = MessageService(env, agents, AgentRuntime(env.clock), search)
        for length in lengths:
            created = await agents.create(
                AgentCreate(
                    name=f"history-{length}",
                    model=MODEL,
                    context_window_limit=CONTEXT_WINDOW,
                    memory_blocks=[
                        BlockCreate(label="human", value="The human is a benchmark."),
                        BlockCreate(label="persona", value="I answer OK."),
                    ],
                )
            )
            await grow_history(env, created.id, length)

            async def turn(i: int, agent_id: str = created.id) -> float:
                request = LettaRequest(messages=[MessageCreate(role="user", content=f"hi {i}")])
                started = time.process_time()
                run = service.new_run(agent_id, None, request, background=False)
                result = await (await service.start_turn(request, run)).run()
                elapsed = time.process_time() - started
                assert result.stop_reason == "end_turn", result.stop_reason
                return elapsed

            for i in range(WARMUP_TURNS):
                await turn(i)
            profiler = cProfile.Profile() if profile == length else None
            if profiler is not None:
                profiler.enable()
            results[length] = [await turn(WARMUP_TURNS + i) for i in range(turns)]
            if profiler is not None:
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
            median_ms = statistics.median(results[length]) * 1000
            print(f"  {length:>6} messages: median {median_ms:.3f} ms", flush=True)
    finally:
        await env.store.close()
        await env.sandbox.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lengths",
        default=",".join(str(n) for n in LENGTHS_DEFAULT),
        help="comma-separated in-context history lengths (default 10,100,1000,10000)",
    )
    parser.add_argument(
        "--turns", type=int, default=TURNS_DEFAULT, help="measured turns per length"
    )
    parser.add_argument(
        "--profile", type=int, default=None, help="cProfile the turns at this length"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir")
    args = parser.parse_args(argv)
    lengths = sorted(int(n) for n in args.lengths.split(",") if n.strip())
    if not lengths or lengths[0] < 2:
        parser.error("lengths must be at least 2 (the system message and one more)")
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-history-"))
    try:
        print(f"- {args.turns} turns per history length, scripted model, in process")
        results = asyncio.run(measure(workdir, lengths, args.turns, args.profile))
    finally:
        if args.keep_data:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    base = statistics.median(results[lengths[0]])
    rows: list[Row] = []
    details: dict[str, Any] = {}
    for length in lengths:
        samples = sorted(results[length])
        median = statistics.median(samples)
        rows.append(Row(f"turn CPU, {length:,} in-context messages (median)", median * 1000, "ms"))
        details[str(length)] = {
            "median_ms": median * 1000,
            "p90_ms": samples[int(len(samples) * 0.9) - 1] * 1000,
            "ratio": median / base,
        }
    ratio = statistics.median(results[lengths[-1]]) / base
    rows.append(
        Row(
            f"CPU ratio {lengths[-1]:,} / {lengths[0]:,} messages",
            ratio,
            "x",
            target=f"<= {TARGET_RATIO}",
            passed=ratio <= TARGET_RATIO,
        )
    )
    print_table(rows)
    if args.json is not None:
        config = {"lengths": lengths, "turns": args.turns, "warmup_turns": WARMUP_TURNS}
        write_results(args.json, config, rows, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())

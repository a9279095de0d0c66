"""Benchmark message turns, agent activation and memory at scale.

What it measures, in order (see bench/README.md for the why and the targets):

1. Message round trip over HTTP: a real `python -m kelpie serve` process, the tests' fake
   OpenAI server answering at once (TCP_NODELAY, see _common.start_fake_llm).
   POST /v1/agents/{id}/messages (JSON, not streaming) sent one at a time, round-robin
   over 10 agents: plain replies (one model call per turn); then, on 10 fresh agents,
   turns with a memory tool call and a reply (two model calls per turn). Per-request
   latency p50/p99, plus the server's own turn time (run.total_duration_ns).
2. In-process, no HTTP and no SDK (kelpie imported, SqliteStore on a temp dir, the model a
   ScriptedProviders): the same turns through MessageService.run_turn, timing each
   `store.commit_step` (one transaction per step) and each turn.
3. In-process hot actor invocation: `AgentRuntime.turn()` enter and exit on an agent that
   is already active, with 1, 1,000 and 10,000 (the cap) agents active.
4. Agents stored in bulk through SqliteStore (batched transactions), then for each store
   size (10k, 100k; 1M with --large): a server started on that store, its start-up time
   and RSS, RSS after activating agents by sending each one message; at 100k also the
   cold activation: AgentService.retrieve(include blocks and tools) of never-touched
   agents in-process on a freshly opened store, and over HTTP the first message to a
   never-used agent against a second (warm) one.

    .venv/bin/python bench/bench_messages.py            # default run, ~3 minutes
    .venv/bin/python bench/bench_messages.py --quick    # smoke run, ~40 s
    .venv/bin/python bench/bench_messages.py --large    # also 1,000,000 agents stored
    .venv/bin/python bench/bench_messages.py --json results.json

Latencies use time.perf_counter; percentiles are nearest-rank (rank ceil(p/100 * n)).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    MIB,
    MODEL,
    BenchError,
    Latencies,
    LeanClient,
    Process,
    Row,
    Server,
    agent_body,
    lean_json,
    print_table,
    process_tree_rss_mib,
    raise_on_sigterm,
    start_fake_llm,
    start_server,
    step,
    write_results,
)
from kelpie.env import Config as KelpieConfig
from kelpie.env import Env, SystemClock, system_entropy
from kelpie.llm import LlmRequest, LlmResponse, ProviderCatalog, ScriptedProviders, ToolCall, Usage
from kelpie.mcp import McpConnections
from kelpie.memory import HashingEmbedder, MemorySearch
from kelpie.runtime import ACTIVE_AGENTS_MAX_DEFAULT, Activation, AgentRuntime
from kelpie.sandbox import ProcessSandbox
from kelpie.schemas import (
    AGENT_PREFIX,
    BLOCK_PREFIX,
    AgentCreate,
    AgentState,
    BlockCreate,
    LettaRequest,
    MessageCreate,
    datetime_from_us,
)
from kelpie.service import AgentService, MessageService, prepare
from kelpie.storage import SqliteStore, StepCommit
from kelpie.web import HttpWeb

DB_FILE = "kelpie.db"
BLOCK_LABEL = "human"
FILL_BATCH = 5_000  # agents per transaction in the bulk fill
FILL_CACHE_KIB = 512 * 1024  # SQLite page cache of the fill connection
ACTIVATE_WORKERS = 4  # concurrent clients activating agents (unmeasured set-up for RSS)
HOT_ACTIVE_COUNTS = (1, 1_000, ACTIVE_AGENTS_MAX_DEFAULT)
HOT_TIME_BOX_S = 10.0  # per active-set size
HOT_SAMPLES_MIN = 1_000

# Targets (see bench/README.md).
TARGET_MESSAGE_P50_MS = 10.0
TARGET_MESSAGE_P99_MS = 25.0
TARGET_HOT_P99_MS = 1.0
TARGET_COLD_P99_MS = 20.0
TARGET_RSS_MIB = 1024.0
TARGET_STARTUP_S = 1.0

# Letta 0.16.8 on PostgreSQL, from /work/shared/platform-notes.md.
LETTA_MESSAGE_P50 = "363 ms"
LETTA_MESSAGE_P99 = "504 ms"
LETTA_IDLE_RSS = "~470 MiB"


# --------------------------------------------------------------------------- in-process


def memory_script() -> Callable[[LlmRequest], LlmResponse]:
    """The scripted model: "remember X" -> memory_insert(human, X); after a tool -> "OK";
    anything else -> "OK". One model call per plain turn, two per memory turn."""
    calls = itertools.count(1)

    def script(request: LlmRequest) -> LlmResponse:
        last = request.messages[-1]
        text = last.content or ""
        if last.role == "user" and text.startswith("remember "):
            arguments = json.dumps({"label": BLOCK_LABEL, "new_string": text[9:]})
            call = ToolCall(id=f"call-{next(calls)}", name="memory_insert", arguments=arguments)
            return LlmResponse(None, (call,), "tool_calls", Usage())
        return LlmResponse("OK", (), "stop", Usage())

    return script


def open_env(
    data_dir: Path,
    llm_base_url: str,
    *,
    background_checkpoints: bool = False,
) -> Env:
    """An Env like the server's (SqliteStore, WAL, synchronous=NORMAL), with the fake's URL
    configured (agents store their model endpoint) and a scripted model."""
    config = KelpieConfig(
        data_dir=data_dir, openai_api_key="sk-bench-fake", openai_base_url=llm_base_url
    )
    clock = SystemClock()
    store = SqliteStore.open(data_dir / DB_FILE, background_checkpoints=background_checkpoints)
    return Env(
        clock=clock,
        entropy=system_entropy(),
        config=config,
        store=store,
        models=ProviderCatalog(config, clock),
        llm=ScriptedProviders(memory_script()),
        embedder=HashingEmbedder(),
        sandbox=ProcessSandbox(root_dir=data_dir / "sandbox", pool_size=0),
        mcp=McpConnections(),
        web=HttpWeb(),
    )


def template_request(name: str) -> AgentCreate:
    return AgentCreate(
        name=name,
        model=MODEL,
        memory_blocks=[
            BlockCreate(label="human", value="The human is benchmark user number 0."),
            BlockCreate(label="persona", value="I am a helpful assistant used for benchmarking."),
        ],
        tags=["bench"],
    )


@dataclass
class InProcessResults:
    commits: Latencies
    step_commits: Latencies
    final_commits: Latencies
    plain_turns: Latencies
    memory_turns: Latencies


async def in_process_turns(
    workdir: Path, llm_base_url: str, agents: int, plain: int, memory: int
) -> InProcessResults:
    """Turns through MessageService.run_turn with every store.commit_step timed."""
    data_dir = workdir / "inproc"
    data_dir.mkdir()
    env = open_env(data_dir, llm_base_url, background_checkpoints=True)
    store = env.store
    commits, step_commits, final_commits = Latencies(), Latencies(), Latencies()
    original = store.commit_step

    async def timed_commit(commit: StepCommit) -> None:
        started = time.perf_counter()
        await original(commit)
        elapsed = time.perf_counter() - started
        commits.samples.append(elapsed)
        (step_commits if commit.step is not None else final_commits).samples.append(elapsed)

    setattr(store, "commit_step", timed_commit)  # noqa: B010  (a method, swapped per instance)
    try:
        await prepare(env)
        service = AgentService(env)
        search = MemorySearch(env.store, env.embedder, env.clock)
        messages = MessageService(env, service, AgentRuntime(env.clock), search)
        ids = [
            (await service.create(template_request(f"inproc-{i}"))).id for i in range(2 * agents)
        ]
        plain_ids, memory_ids = ids[:agents], ids[agents:]

        async def turn(agent_id: str, text: str) -> float:
            request = LettaRequest(messages=[MessageCreate(role="user", content=text)])
            started = time.perf_counter()
            run = messages.new_run(agent_id, None, request, background=False)
            result = await (await messages.start_turn(request, run)).run()
            elapsed = time.perf_counter() - started
            if result.stop_reason != "end_turn":
                raise BenchError(f"in-process turn stopped with {result.stop_reason}")
            edits = [m.tool_status for m in result.messages if m.role == "tool"]
            if edits != (["success"] if text.startswith("remember ") else []):
                raise BenchError(f"in-process turn {text!r}: tool results {edits}")
            return elapsed

        for agent_id in ids:  # warm-up, unmeasured
            await turn(agent_id, "hello")
        commits.samples.clear()
        step_commits.samples.clear()
        final_commits.samples.clear()
        plain_turns = Latencies(
            [await turn(plain_ids[i % agents], f"hi {i}") for i in range(plain)]
        )
        memory_turns = Latencies(
            [await turn(memory_ids[i % agents], f"remember tok-{i}") for i in range(memory)]
        )
    finally:
        await store.close()
    return InProcessResults(commits, step_commits, final_commits, plain_turns, memory_turns)


async def hot_actor(iterations: int, rng: random.Random) -> dict[int, Latencies]:
    """AgentRuntime.turn() enter and exit on already-active agents, for several sizes of
    the active set; one fresh runtime per size. Each size takes `iterations` samples, or
    as many as fit in HOT_TIME_BOX_S (at least HOT_SAMPLES_MIN)."""
    results: dict[int, Latencies] = {}
    for active in HOT_ACTIVE_COUNTS:
        clock = SystemClock()
        runtime = AgentRuntime(clock)
        ids = [f"agent-{i:08d}" for i in range(active)]
        # Set-up, unmeasured: the activations turn() would create, put straight into the
        # (private) table; activating 10,000 agents through turn() takes ~20 s, as each
        # activation scans the whole table.
        for agent_id in ids:
            now = clock.monotonic_s()
            runtime._active[agent_id] = Activation(agent_id=agent_id, last_used_s=now)
        if runtime.active_count != active:
            raise BenchError(f"{runtime.active_count} active, expected {active}")
        latencies = Latencies()
        deadline = time.perf_counter() + HOT_TIME_BOX_S
        for i in range(iterations):
            agent_id = rng.choice(ids)
            started = time.perf_counter()
            async with runtime.turn(agent_id, None, f"run-{i}"):
                pass
            ended = time.perf_counter()
            latencies.samples.append(ended - started)
            if ended > deadline and i + 1 >= HOT_SAMPLES_MIN:
                break
        results[active] = latencies
    return results


# --------------------------------------------------------------------------- bulk fill


@contextlib.contextmanager
def batched_transactions(store: SqliteStore) -> Iterator[sqlite3.Connection]:
    """insert_agent opens a transaction per call; a bulk fill wants one per batch. While
    held, the store's own `_tx` is swapped for a pass-through (the caller BEGINs and
    COMMITs), so the rows are still written by the store's code."""
    db: sqlite3.Connection = store._db

    @contextlib.contextmanager
    def passthrough() -> Iterator[sqlite3.Connection]:
        yield db

    db.execute(f"PRAGMA cache_size=-{FILL_CACHE_KIB}")
    setattr(store, "_tx", passthrough)  # noqa: B010
    try:
        yield db
    finally:
        delattr(store, "_tx")


async def fill_agents(data_dir: Path, llm_base_url: str, total: int, ids: list[str]) -> float:
    """Grows the store at data_dir to `total` agents (appending their ids to `ids`);
    returns the wall time. Each agent is the default agent a client would create (base
    tools, human and persona blocks, a tag), with its own blocks."""
    env = open_env(data_dir, llm_base_url)
    store = env.store
    assert isinstance(store, SqliteStore)
    started = time.perf_counter()
    try:
        await prepare(env)
        service = AgentService(env)
        if not ids:
            ids.append((await service.create(template_request("bench-0"))).id)
        template = await service.retrieve(ids[0], ("agent.blocks", "agent.tools", "agent.tags"))
        tool_ids = [tool.id for tool in template.tools]
        base_us = env.clock.now_us()
        with batched_transactions(store) as db:
            for batch_start in range(len(ids), total, FILL_BATCH):
                db.execute("BEGIN")
                for i in range(batch_start, min(batch_start + FILL_BATCH, total)):
                    ids.append(await insert_copy(env, store, template, tool_ids, i, base_us + i))
                db.execute("COMMIT")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the database size is then the file's
    finally:
        await store.close()
    return time.perf_counter() - started


async def insert_copy(
    env: Env, store: SqliteStore, template: AgentState, tool_ids: list[str], i: int, at_us: int
) -> str:
    """Stores agent number i, a copy of `template` with its own ids and blocks."""
    at = datetime_from_us(at_us)
    blocks = [
        block.model_copy(
            update={
                "id": env.entropy.new_id(BLOCK_PREFIX),
                "value": f"The human is benchmark user number {i}."
                if block.label == BLOCK_LABEL
                else block.value,
                "created_at": at,
                "updated_at": at,
            }
        )
        for block in template.blocks
    ]
    agent = template.model_copy(
        update={
            "id": env.entropy.new_id(AGENT_PREFIX),
            "name": f"bench-{i}",
            "created_at": at,
            "updated_at": at,
        }
    )
    await store.insert_agent(
        agent,
        new_blocks=blocks,
        block_ids=[block.id for block in blocks],
        tool_ids=tool_ids,
        tags=["bench"],
    )
    return agent.id


async def cold_retrieve(data_dir: Path, llm_base_url: str, picks: Sequence[str]) -> Latencies:
    """AgentService.retrieve(include blocks and tools) of agents nobody has touched since
    the fill, on a freshly opened store (SQLite's page cache empty; the OS's file cache is
    whatever the fill left, which this benchmark cannot drop)."""
    env = open_env(data_dir, llm_base_url)
    service = AgentService(env)
    latencies = Latencies()
    try:
        for agent_id in picks:
            started = time.perf_counter()
            agent = await service.retrieve(agent_id, ("agent.blocks", "agent.tools"))
            latencies.samples.append(time.perf_counter() - started)
            if len(agent.blocks) != 2 or not agent.tools:
                raise BenchError(f"agent {agent_id} came back without its blocks or tools")
    finally:
        await env.store.close()
    return latencies


# --------------------------------------------------------------------------- over HTTP


def send_message(client: LeanClient, agent_id: str, text: str) -> tuple[float, dict[str, Any]]:
    """One JSON (not streaming) turn: its latency and its LettaResponse."""
    body = {"messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    status, raw = client.request("POST", f"/v1/agents/{agent_id}/messages", body)
    elapsed = time.perf_counter() - started
    response: dict[str, Any] = lean_json(status, raw, f"POST /v1/agents/{agent_id}/messages")
    return elapsed, response


def items_of(response: dict[str, Any], message_type: str) -> list[dict[str, Any]]:
    return [m for m in response.get("messages", []) if m.get("message_type") == message_type]


def check_reply(response: dict[str, Any], expected: str, what: str) -> None:
    replies = [m.get("content") for m in items_of(response, "assistant_message")]
    if replies != [expected]:
        raise BenchError(f"{what}: expected the reply {expected!r}, got {response}")


def run_durations_ms(client: LeanClient, agent_ids: Sequence[str]) -> dict[str, float]:
    """run id -> the server's own turn time (total_duration_ns), for all runs of the agents."""
    durations: dict[str, float] = {}
    for agent_id in agent_ids:
        after = ""
        while True:
            query = f"agent_id={agent_id}&order=asc&limit=1000" + (
                f"&after={after}" if after else ""
            )
            page = lean_json(*client.request("GET", f"/v1/runs/?{query}"), "GET /v1/runs/")
            for run in page:
                if run.get("total_duration_ns") is not None:
                    durations[run["id"]] = run["total_duration_ns"] / 1e6
            if len(page) < 1000:
                break
            after = page[-1]["id"]
    return durations


@dataclass
class MessageResults:
    plain: Latencies
    memory: Latencies
    plain_server: Latencies
    memory_server: Latencies
    messages_listed: dict[str, int]  # items listed at the end, for one agent of each kind


def message_round_trips(
    server: Server, llm_url: str, agents: int, plain: int, memory: int
) -> MessageResults:
    """Plain turns on `agents` agents, then memory turns on as many fresh ones (so both
    start from the same, short history)."""
    fake_url = llm_url.removesuffix("/v1")
    with LeanClient(server.base_url) as client, LeanClient(fake_url) as fake:
        lean_json(*fake.request("DELETE", "/_script"), "DELETE /_script")
        ids = [
            lean_json(*client.request("POST", "/v1/agents/", agent_body(i)), "create")["id"]
            for i in range(2 * agents)
        ]
        plain_ids, memory_ids = ids[:agents], ids[agents:]
        for agent_id in ids:  # warm-up: the first turn of a process imports the model SDK
            check_reply(send_message(client, agent_id, "hello")[1], "OK", "warm-up")

        plain_lat, plain_runs = Latencies(), []
        for i in range(plain):
            elapsed, response = send_message(client, plain_ids[i % agents], f"hi {i}")
            check_reply(response, "OK", f"plain turn {i}")
            plain_lat.samples.append(elapsed)
            plain_runs.append(response["usage"]["run_ids"][0])

        memory_lat, memory_runs = Latencies(), []
        for i in range(memory):
            arguments = json.dumps({"label": BLOCK_LABEL, "new_string": f"tok-{i}"})
            call = {"id": f"call-{i}", "name": "memory_insert", "arguments": arguments}
            script = [{"tool_calls": [call]}, {"content": "Noted."}]
            lean_json(*fake.request("DELETE", "/_script"), "DELETE /_script")
            lean_json(*fake.request("POST", "/_script", script), "POST /_script")
            elapsed, response = send_message(client, memory_ids[i % agents], f"remember tok-{i}")
            check_reply(response, "Noted.", f"memory turn {i}")
            returns = items_of(response, "tool_return_message")
            if [r.get("status") for r in returns] != ["success"]:
                raise BenchError(f"memory turn {i}: the edit did not succeed: {response}")
            memory_lat.samples.append(elapsed)
            memory_runs.append(response["usage"]["run_ids"][0])

        durations = run_durations_ms(client, ids)
        stored = {}
        for kind, agent_id in (("plain", plain_ids[0]), ("memory", memory_ids[0])):
            status, raw = client.request("GET", f"/v1/agents/{agent_id}/messages?limit=1000")
            stored[kind] = len(lean_json(status, raw, "GET messages"))
    return MessageResults(
        plain=plain_lat,
        memory=memory_lat,
        plain_server=Latencies([durations[r] / 1000 for r in plain_runs if r in durations]),
        memory_server=Latencies([durations[r] / 1000 for r in memory_runs if r in durations]),
        messages_listed=stored,
    )


def activate(base_url: str, agent_ids: Sequence[str], workers: int) -> float:
    """Sends every agent one message (plain reply) from `workers` clients; wall time."""

    def work(share: Sequence[str]) -> None:
        with LeanClient(base_url) as client:
            for agent_id in share:
                check_reply(send_message(client, agent_id, "hello")[1], "OK", "activation")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, [agent_ids[w::workers] for w in range(workers)]))
    return time.perf_counter() - started


@dataclass
class ColdHttp:
    first: Latencies
    warm: Latencies
    extra: Latencies  # first - warm, per agent


def cold_first_messages(base_url: str, picks: Sequence[str]) -> ColdHttp:
    """For each never-used agent: a first message (activation: load from the store, first
    step, system message created), then a second one (warm)."""
    result = ColdHttp(Latencies(), Latencies(), Latencies())
    with LeanClient(base_url) as client:
        for agent_id in picks:
            first, response = send_message(client, agent_id, "hello")
            check_reply(response, "OK", "first message")
            warm, response = send_message(client, agent_id, "hello again")
            check_reply(response, "OK", "second message")
            result.first.samples.append(first)
            result.warm.samples.append(warm)
            result.extra.samples.append(first - warm)
    return result


def agent_count(base_url: str) -> int:
    with LeanClient(base_url) as client:
        count: int = lean_json(*client.request("GET", "/v1/agents/count"), "agents/count")
    return count


def db_size_mib(data_dir: Path) -> float:
    files = [data_dir / DB_FILE, data_dir / f"{DB_FILE}-wal"]
    return sum(path.stat().st_size for path in files if path.exists()) / MIB


@dataclass
class ScaleResult:
    stored: int
    fill_s: float
    db_mib: float
    startup_s: float
    idle_rss: float
    activated: int
    rss: float
    cap_activated: int = 0
    cap_rss: float | None = None
    cold_retrieve: Latencies | None = None
    cold_http: ColdHttp | None = None


# --------------------------------------------------------------------------- main


@dataclass
class Config:
    agents: int
    plain: int
    memory: int
    inproc_plain: int
    inproc_memory: int
    hot_iterations: int
    sizes: list[int]
    cold_size: int
    cold_retrieves: int
    cold_sends: int
    activate: int
    cap_activate: int
    seed: int
    startup_timeout_s: float
    json_path: Path | None
    keep_data: bool
    large: bool
    stock_fake: bool


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        description="Benchmark message turns, activation and memory at scale.",
        epilog="Percentiles are nearest-rank: value at rank ceil(p/100 * n) of the sorted samples.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run with small counts")
    parser.add_argument(
        "--large",
        action="store_true",
        help="also store 1,000,000 agents and activate 10,000 (the cap); ~10 min, ~7 GB disk",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--agents", type=int, default=10, help="agents the messages go to (10)")
    parser.add_argument("--messages", type=int, help="plain-reply turns (1000; 200 --quick)")
    parser.add_argument(
        "--memory-messages", type=int, help="memory tool + reply turns (300; 100 --quick)"
    )
    parser.add_argument(
        "--hot", type=int, help="hot turn() enter/exit samples per active-set size (20000)"
    )
    parser.add_argument(
        "--activate", type=int, help="agents activated per store size for RSS (1000; 200 --quick)"
    )
    parser.add_argument("--seed", type=int, default=1234, help="seed for the random picks")
    parser.add_argument(
        "--startup-timeout", type=float, default=120.0, help="seconds to wait for /v1/health"
    )
    parser.add_argument(
        "--stock-fake",
        action="store_true",
        help="run the fake LLM as the tests do (no TCP_NODELAY: ~40 ms per model call)",
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp dir (stores, logs)")
    args = parser.parse_args(argv)
    quick: bool = args.quick
    sizes = [1_000, 10_000] if quick else [10_000, 100_000]
    if args.large:
        sizes.append(1_000_000)
    config = Config(
        agents=args.agents,
        plain=args.messages if args.messages is not None else (200 if quick else 1000),
        memory=args.memory_messages
        if args.memory_messages is not None
        else (100 if quick else 300),
        inproc_plain=200 if quick else 1000,
        inproc_memory=100 if quick else 500,
        hot_iterations=args.hot if args.hot is not None else (5_000 if quick else 20_000),
        sizes=sizes,
        cold_size=10_000 if quick else 100_000,
        cold_retrieves=200 if quick else 1000,
        cold_sends=100 if quick else 300,
        activate=args.activate if args.activate is not None else (200 if quick else 1000),
        cap_activate=ACTIVE_AGENTS_MAX_DEFAULT if args.large else 0,
        seed=args.seed,
        startup_timeout_s=args.startup_timeout,
        json_path=args.json,
        keep_data=args.keep_data,
        large=args.large,
        stock_fake=args.stock_fake,
    )
    for name in ("agents", "plain", "memory", "hot_iterations", "activate"):
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return config


@dataclass
class Results:
    messages: MessageResults
    inproc: InProcessResults
    hot: dict[int, Latencies]
    scales: list[ScaleResult] = field(default_factory=list)


def scale_phase(
    config: Config,
    workdir: Path,
    llm_url: str,
    env: dict[str, str],
    processes: list[Process],
    rng: random.Random,
) -> list[ScaleResult]:
    """One store grown to each size; a server started on it each time. Activations live in
    a server process, so each server activates its own agents."""
    data_dir = workdir / "scale"
    data_dir.mkdir()
    ids: list[str] = []
    used: set[str] = set()  # read or sent to at least once: never "cold" again
    results: list[ScaleResult] = []

    def pick(count: int, excluded: set[str]) -> list[str]:
        candidates = [agent_id for agent_id in ids if agent_id not in excluded]
        return rng.sample(candidates, min(max(count, 0), len(candidates)))

    for size in config.sizes:
        with step(f"storing {size:,} agents in bulk"):
            fill_s = asyncio.run(fill_agents(data_dir, llm_url, size, ids))
        db_mib = db_size_mib(data_dir)
        cold_retrieve_lat = None
        if size == config.cold_size:
            picks = pick(config.cold_retrieves, used)
            with step(f"cold retrieve x{len(picks)} (in-process, store just opened)"):
                cold_retrieve_lat = asyncio.run(cold_retrieve(data_dir, llm_url, picks))
            used.update(picks)
        with step(f"starting a server on {size:,} agents"):
            server = start_server(
                data_dir, env, workdir / f"server-{size}.log", config.startup_timeout_s
            )
            processes.append(server.process)
        try:
            counted = agent_count(server.base_url)
            if counted != size:
                raise BenchError(f"the server counts {counted} agents, {size} were stored")
            idle_rss = process_tree_rss_mib(server.process.pid)
            active: set[str] = set()
            cold_http = None
            if size == config.cold_size:
                picks = pick(config.cold_sends, used)
                with step(f"first and second message to {len(picks)} never-used agents"):
                    cold_http = cold_first_messages(server.base_url, picks)
                active.update(picks)
            batch = pick(config.activate - len(active), active)
            with step(f"activating {len(batch)} more agents ({ACTIVATE_WORKERS} clients)"):
                activate(server.base_url, batch, ACTIVATE_WORKERS)
            active.update(batch)
            used.update(active)
            result = ScaleResult(
                stored=size,
                fill_s=fill_s,
                db_mib=db_mib,
                startup_s=server.startup_s,
                idle_rss=idle_rss,
                activated=len(active),
                rss=process_tree_rss_mib(server.process.pid),
                cold_retrieve=cold_retrieve_lat,
                cold_http=cold_http,
            )
            if config.cap_activate and size == config.sizes[-1]:
                batch = pick(config.cap_activate - len(active), active)
                with step(f"activating {len(batch)} more agents, up to the active cap"):
                    activate(server.base_url, batch, ACTIVATE_WORKERS)
                active.update(batch)
                used.update(batch)
                result.cap_activated = len(active)
                result.cap_rss = process_tree_rss_mib(server.process.pid)
            if server.process.exited() is not None:
                raise BenchError(f"the server exited with {server.process.exited()}")
        except (OSError, BenchError) as exc:
            raise with_log(exc, server) from exc
        finally:
            server.process.stop()
            processes.remove(server.process)
        results.append(result)
    return results


def with_log(exc: Exception, server: Server) -> BenchError:
    """The error with the server's own account of it, the useful part."""
    return BenchError(f"{exc}\n--- server log (tail) ---\n{server.process.log_tail()}")


def run(config: Config, workdir: Path) -> Results:
    processes: list[Process] = []
    rng = random.Random(config.seed)
    try:
        with step("starting the fake OpenAI server"):
            fake, llm_url = start_fake_llm(workdir, nodelay=not config.stock_fake)
            processes.append(fake)
        env = dict(os.environ, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="sk-bench-fake")

        data_dir = workdir / "messages"
        data_dir.mkdir()
        server = start_server(
            data_dir, env, workdir / "server-messages.log", config.startup_timeout_s
        )
        processes.append(server.process)
        try:
            with step(
                f"{config.plain} plain and {config.memory} memory turns over HTTP"
                f" ({config.agents} agents each)"
            ):
                messages = message_round_trips(
                    server, llm_url, config.agents, config.plain, config.memory
                )
        except (OSError, BenchError) as exc:
            raise with_log(exc, server) from exc
        finally:
            server.process.stop()
            processes.remove(server.process)

        with step(
            f"{config.inproc_plain} plain and {config.inproc_memory} memory turns in-process"
        ):
            inproc = asyncio.run(
                in_process_turns(
                    workdir, llm_url, config.agents, config.inproc_plain, config.inproc_memory
                )
            )
        with step(f"hot turn() enter/exit x{config.hot_iterations} per active-set size"):
            hot = asyncio.run(hot_actor(config.hot_iterations, rng))
        results = Results(messages=messages, inproc=inproc, hot=hot)
        results.scales = scale_phase(config, workdir, llm_url, env, processes, rng)
    finally:
        for proc in reversed(processes):
            proc.stop()
    return results


def ms(latencies: Latencies) -> dict[str, float]:
    return latencies.summary_ms()


def rows_of(config: Config, r: Results) -> list[Row]:
    plain, memory = ms(r.messages.plain), ms(r.messages.memory)
    rows = [
        Row("Message round trip, plain reply, p50", plain["p50_ms"], "ms",
            f"<= {TARGET_MESSAGE_P50_MS:g} ms", plain["p50_ms"] <= TARGET_MESSAGE_P50_MS,
            LETTA_MESSAGE_P50),
        Row("Message round trip, plain reply, p99", plain["p99_ms"], "ms",
            f"<= {TARGET_MESSAGE_P99_MS:g} ms", plain["p99_ms"] <= TARGET_MESSAGE_P99_MS,
            LETTA_MESSAGE_P99),
        Row("  server turn time (run duration) p50", ms(r.messages.plain_server)["p50_ms"], "ms"),
        Row("  server turn time (run duration) p99", ms(r.messages.plain_server)["p99_ms"], "ms"),
        Row("Message round trip, memory tool + reply, p50", memory["p50_ms"], "ms"),
        Row("Message round trip, memory tool + reply, p99", memory["p99_ms"], "ms"),
        Row("  server turn time (run duration) p50", ms(r.messages.memory_server)["p50_ms"], "ms"),
        Row("  server turn time (run duration) p99", ms(r.messages.memory_server)["p99_ms"], "ms"),
        Row("In-process turn, plain, p50", ms(r.inproc.plain_turns)["p50_ms"], "ms"),
        Row("In-process turn, plain, p99", ms(r.inproc.plain_turns)["p99_ms"], "ms"),
        Row("In-process turn, memory tool + reply, p50", ms(r.inproc.memory_turns)["p50_ms"], "ms"),
        Row("In-process turn, memory tool + reply, p99", ms(r.inproc.memory_turns)["p99_ms"], "ms"),
        Row("store.commit_step p50 (all commits)", ms(r.inproc.commits)["p50_ms"], "ms"),
        Row("store.commit_step p99 (all commits)", ms(r.inproc.commits)["p99_ms"], "ms"),
    ]  # fmt: skip
    for active, latencies in r.hot.items():
        hot = ms(latencies)
        rows += [
            Row(f"Hot turn() enter+exit p50, {active:,} active", hot["p50_ms"], "ms"),
            Row(f"Hot turn() enter+exit p99, {active:,} active", hot["p99_ms"], "ms",
                f"< {TARGET_HOT_P99_MS:g} ms", hot["p99_ms"] < TARGET_HOT_P99_MS),
        ]  # fmt: skip
    for s in r.scales:
        label = f"{s.stored:,} stored"
        rows += [
            Row(f"Bulk store to {label} (in-process)", s.fill_s, "s"),
            Row(f"Database size after the bulk store, {label}", s.db_mib, "MiB"),
            Row(f"Start-up, {label}", s.startup_s, "s", f"< {TARGET_STARTUP_S:g} s",
                s.startup_s < TARGET_STARTUP_S),
            Row(f"Idle RSS, {label}", s.idle_rss, "MiB", letta=LETTA_IDLE_RSS),
            Row(f"RSS, {label}, {s.activated:,} activated", s.rss, "MiB", "< 1 GiB",
                s.rss < TARGET_RSS_MIB),
        ]  # fmt: skip
        if s.cap_rss is not None:
            rows.append(
                Row(f"RSS, {label}, {s.cap_activated:,} activated (cap)", s.cap_rss, "MiB",
                    "< 1 GiB", s.cap_rss < TARGET_RSS_MIB)
            )  # fmt: skip
        if s.cold_retrieve is not None:
            cold = ms(s.cold_retrieve)
            rows += [
                Row(f"Cold retrieve (blocks+tools), {label}, p50", cold["p50_ms"], "ms"),
                Row(f"Cold retrieve (blocks+tools), {label}, p99", cold["p99_ms"], "ms",
                    f"< {TARGET_COLD_P99_MS:g} ms", cold["p99_ms"] < TARGET_COLD_P99_MS),
            ]  # fmt: skip
        if s.cold_http is not None:
            first, warm, extra = ms(s.cold_http.first), ms(s.cold_http.warm), ms(s.cold_http.extra)
            rows += [
                Row(f"First message to a never-used agent, {label}, p50", first["p50_ms"], "ms"),
                Row(f"First message to a never-used agent, {label}, p99", first["p99_ms"], "ms"),
                Row("  second (warm) message p50", warm["p50_ms"], "ms"),
                Row("  second (warm) message p99", warm["p99_ms"], "ms"),
                Row("  first - warm, per agent, p50", extra["p50_ms"], "ms"),
                Row("  first - warm, per agent, p99", extra["p99_ms"], "ms",
                    f"< {TARGET_COLD_P99_MS:g} ms", extra["p99_ms"] < TARGET_COLD_P99_MS),
            ]  # fmt: skip
    return rows


def details_of(r: Results) -> dict[str, Any]:
    def deciles(latencies: Latencies) -> list[float]:
        """p50 of each tenth of the run, in order: how latency grows with history."""
        n = len(latencies.samples)
        tenth = max(1, n // 10)
        return [
            statistics.median(latencies.samples[i : i + tenth]) * 1000 for i in range(0, n, tenth)
        ]

    scales = []
    for s in r.scales:
        entry: dict[str, Any] = {
            "stored": s.stored,
            "fill_s": s.fill_s,
            "fill_per_s": s.stored / s.fill_s if s.fill_s else None,
            "db_mib": s.db_mib,
            "startup_s": s.startup_s,
            "idle_rss_mib": s.idle_rss,
            "activated": s.activated,
            "rss_mib": s.rss,
            "cap_activated": s.cap_activated or None,
            "cap_rss_mib": s.cap_rss,
        }
        if s.cold_retrieve is not None:
            entry["cold_retrieve"] = ms(s.cold_retrieve)
        if s.cold_http is not None:
            entry["cold_first_message"] = ms(s.cold_http.first)
            entry["warm_message"] = ms(s.cold_http.warm)
            entry["first_minus_warm"] = ms(s.cold_http.extra)
        scales.append(entry)
    return {
        "message_plain": ms(r.messages.plain),
        "message_plain_p50_by_decile_ms": deciles(r.messages.plain),
        "message_plain_server": ms(r.messages.plain_server),
        "message_memory": ms(r.messages.memory),
        "message_memory_p50_by_decile_ms": deciles(r.messages.memory),
        "message_memory_server": ms(r.messages.memory_server),
        "messages_listed_at_end_one_agent": r.messages.messages_listed,
        "inproc_plain_turn": ms(r.inproc.plain_turns),
        "inproc_memory_turn": ms(r.inproc.memory_turns),
        "commit_step": ms(r.inproc.commits),
        "commit_step_with_step": ms(r.inproc.step_commits),
        "commit_step_final_run": ms(r.inproc.final_commits),
        "hot_turn": {str(active): ms(latencies) for active, latencies in r.hot.items()},
        "scales": scales,
    }


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    print(
        f"Kelpie message benchmark: {config.plain} plain + {config.memory} memory turns over"
        f" {config.agents} agents; stores of {', '.join(f'{s:,}' for s in config.sizes)}"
        f" agents (seed {config.seed}{', stock fake LLM' if config.stock_fake else ''})"
    )
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-messages-"))
    try:
        results = run(config, workdir)
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if config.keep_data:
            print(f"Kept data dirs and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    rows = rows_of(config, results)
    details = details_of(results)
    print_table(rows)
    growth = ", ".join(f"{p:.1f}" for p in details["message_plain_p50_by_decile_ms"])
    print(f"Plain round trip p50 by tenth of the run (history grows): {growth} ms")
    misses = [r.name.strip() for r in rows if r.passed is False]
    print("All targets met." if not misses else f"Missed: {', '.join(misses)}")

    if config.json_path is not None:
        settings = {
            "agents": config.agents,
            "plain": config.plain,
            "memory": config.memory,
            "inproc_plain": config.inproc_plain,
            "inproc_memory": config.inproc_memory,
            "hot_iterations": config.hot_iterations,
            "sizes": config.sizes,
            "cold_size": config.cold_size,
            "cold_retrieves": config.cold_retrieves,
            "cold_sends": config.cold_sends,
            "activate": config.activate,
            "cap_activate": config.cap_activate,
            "seed": config.seed,
            "stock_fake": config.stock_fake,
        }
        write_results(config.json_path, settings, rows, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())

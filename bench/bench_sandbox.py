"""Benchmark the process sandbox that runs custom tools (bubblewrap workers, warm pool).

What it measures, in order (see bench/README.md for the why and the targets):

1. In process, against `ProcessSandbox` directly (no server, no HTTP), on the event loop
   the server uses (uvloop): a pool of 8 workers started and filled; the RSS, PSS and USS
   of one idle worker (its process tree: bubblewrap, bubblewrap's init, the Python worker),
   summed over the 8 and divided by 8; the pool's refill rate (the 8 workers taken at
   once, the time until the pool is full again); then warm calls of a trivial tool (a
   function returning its argument), paced at half that refill rate so the pool keeps up,
   each timed around `await sandbox.run(job)`.
2. Cold calls: pool_size=0, so every call starts its own locked-down worker.
3. Over HTTP against a real `python -m kelpie serve` (pool at its default size) and the
   tests' fake OpenAI server: a turn whose scripted model calls a custom tool (created with
   POST /v1/tools/) and then answers, against the same turn shape calling the built-in
   `working_memory_get` (runs in the server, one store read) instead, alternated on the
   same agents; the custom-tool turns paced like the warm calls. The difference is what
   the sandbox adds to a turn. Then custom-tool turns back to back, unpaced.
4. 16 concurrent calls (asyncio.gather of 16 runs) per batch, each batch started on a full
   pool, with the default pool size and with a pool of 16: wall time per batch and the
   latency of each call.

    .venv/bin/python bench/bench_sandbox.py            # default run, ~2-3 minutes
    .venv/bin/python bench/bench_sandbox.py --quick    # smoke run, ~40 s
    .venv/bin/python bench/bench_sandbox.py --json results.json

Latencies use time.perf_counter; percentiles are nearest-rank (rank ceil(p/100 * n)).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from _common import (
    MIB,
    BenchError,
    Latencies,
    LeanClient,
    Process,
    Row,
    Server,
    agent_body,
    lean_json,
    percentile,
    print_table,
    raise_on_sigterm,
    start_fake_llm,
    start_server,
    step,
    write_results,
)
from kelpie.sandbox import SANDBOX_POOL_SIZE_DEFAULT, ProcessSandbox, ToolJob, ToolJobResult

T = TypeVar("T")

TOOL_NAME = "bench_echo"
TOOL_SOURCE = f'''def {TOOL_NAME}(value: str) -> str:
    """Returns its argument.

    Args:
        value (str): What to return.

    Returns:
        str: The argument.
    """
    return value
'''
BUILTIN_TOOL = "working_memory_get"
REPLY = "Done."
WORKER_SCRIPT = "import _worker"  # in the command line of every sandboxed Python worker

WARM_POOL = 8  # pool for the warm calls, the refill rate and the RSS per worker
PACE_FRACTION = 0.5  # warm calls are paced at this fraction of the measured refill rate
REFILL_ROUNDS = 5  # the pool emptied and refilled this many times (median reported)
CONCURRENCY = 16
CONCURRENT_POOL_SIZES = (SANDBOX_POOL_SIZE_DEFAULT, CONCURRENCY)
COLD_GAP_S = 0.02  # between cold calls: the previous worker's clean-up is not in the next
POOL_FULL_TIMEOUT_S = 60.0
POOL_POLL_S = 0.001
SETTLE_S = 0.5  # after the pool is full, before the RSS is read
STALL_TICK_S = 0.001  # the loop-stall monitor's sleep
BATCH_GAP_S = 0.1  # between batches of concurrent calls, after the pool is full
HTTP_QUIET_S = 0.1  # after a custom-tool turn: its worker retired, the pool refilled

# Targets (see bench/README.md).
TARGET_WARM_P50_MS = 5.0
TARGET_WARM_P99_MS = 20.0
TARGET_COLD_P50_MS = 50.0
TARGET_ADDED_P50_MS = 10.0


# --------------------------------------------------------------------------- in-process


def echo_job(value: str) -> ToolJob:
    return ToolJob(source_code=TOOL_SOURCE, function_name=TOOL_NAME, arguments={"value": value})


def check_echo(result: ToolJobResult, value: str, what: str) -> None:
    if result.status != "success" or result.func_return != value:
        raise BenchError(f"{what}: expected {value!r} back, got {result}")


@contextlib.asynccontextmanager
async def open_sandbox(root_dir: Path, pool_size: int) -> AsyncIterator[ProcessSandbox]:
    """A started ProcessSandbox (host checked, first worker started); closed on exit."""
    sandbox = ProcessSandbox(root_dir=root_dir, pool_size=pool_size)
    await sandbox.start()
    try:
        await sandbox.ready()
        if sandbox.unavailable_reason is not None:
            raise BenchError(f"the sandbox is unavailable: {sandbox.unavailable_reason}")
        yield sandbox
    finally:
        await sandbox.close()


async def wait_warm(sandbox: ProcessSandbox, count: int) -> float:
    """Waits until the pool holds at least `count` ready workers; returns the wait."""
    started = time.perf_counter()
    deadline = started + POOL_FULL_TIMEOUT_S
    while sandbox.warm_workers < count:
        if time.perf_counter() > deadline:
            raise BenchError(
                f"the pool holds {sandbox.warm_workers} workers, not {count},"
                f" after {POOL_FULL_TIMEOUT_S:g} s"
            )
        await asyncio.sleep(POOL_POLL_S)
    return time.perf_counter() - started


async def timed_run(sandbox: ProcessSandbox, value: str) -> float:
    started = time.perf_counter()
    result = await sandbox.run(echo_job(value))
    elapsed = time.perf_counter() - started
    check_echo(result, value, "sandbox call")
    return elapsed


@dataclass
class WorkerMemory:
    workers: int
    processes_per_worker: float
    rss_mib: float  # per worker, its whole process tree
    pss_mib: float | None
    uss_mib: float | None
    python_rss_mib: float  # per worker, the Python process alone


def worker_trees() -> list[list[psutil.Process]]:
    """The sandboxed workers of this process: each child whose process tree runs the
    sandbox's worker script (the stage holder, also a child, does not)."""
    trees = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = [child, *child.children(recursive=True)]
            if any(WORKER_SCRIPT in " ".join(proc.cmdline()) for proc in tree):
                trees.append(tree)
    return trees


def worker_memory(expected: int) -> WorkerMemory:
    trees = worker_trees()
    if len(trees) != expected:
        raise BenchError(f"found {len(trees)} sandbox workers, expected {expected}")
    rss = pss = uss = python_rss = 0
    full = True
    processes = 0
    for tree in trees:
        for proc in tree:
            processes += 1
            rss += int(proc.memory_info().rss)
            if not proc.children():  # the Python worker (bubblewrap's lines name it too)
                python_rss += int(proc.memory_info().rss)
            try:
                info = proc.memory_full_info()
                pss += int(getattr(info, "pss", 0))
                uss += int(getattr(info, "uss", 0))
                full = full and hasattr(info, "pss")
            except (psutil.AccessDenied, NotImplementedError):
                full = False
    n = len(trees)
    return WorkerMemory(
        workers=n,
        processes_per_worker=processes / n,
        rss_mib=rss / n / MIB,
        pss_mib=pss / n / MIB if full else None,
        uss_mib=uss / n / MIB if full else None,
        python_rss_mib=python_rss / n / MIB,
    )


class LoopStalls:
    """The longest event-loop stall in a window: a task sleeps STALL_TICK_S at a time and
    notes how late it wakes. A stall delays everything else the loop serves (in the
    server: every other request), so it is part of what a call costs."""

    def __init__(self) -> None:
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopStalls:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(STALL_TICK_S)
            self._worst = max(self._worst, time.perf_counter() - before - STALL_TICK_S)

    def take(self) -> float:
        """The longest stall since the last take."""
        worst, self._worst = self._worst, 0.0
        return worst


@dataclass
class WarmResults:
    memory: WorkerMemory
    description: str
    refill_s: list[float]  # time to refill the emptied pool, per round
    refill_per_s: float  # workers started per second (median round)
    pace_s: float
    warm: Latencies
    stalls: Latencies  # per call: longest loop stall from its start to the next call's
    empty: int  # paced calls that found the pool empty and waited for a worker


async def warm_calls(root_dir: Path, calls: int) -> WarmResults:
    async with open_sandbox(root_dir, WARM_POOL) as sandbox, LoopStalls() as loop_stalls:
        await wait_warm(sandbox, WARM_POOL)
        await asyncio.sleep(SETTLE_S)
        memory = worker_memory(WARM_POOL)
        # Refill: all workers taken at once (their calls run concurrently), the clock from
        # the first take until the pool is full again.
        refill_s = []
        for r in range(REFILL_ROUNDS):
            await wait_warm(sandbox, WARM_POOL)
            started = time.perf_counter()
            await asyncio.gather(*(timed_run(sandbox, f"refill-{r}-{i}") for i in range(WARM_POOL)))
            await wait_warm(sandbox, WARM_POOL)
            refill_s.append(time.perf_counter() - started)
        refill_per_s = WARM_POOL / statistics.median(refill_s)
        pace_s = 1 / (PACE_FRACTION * refill_per_s)
        await wait_warm(sandbox, WARM_POOL)
        await asyncio.sleep(pace_s)
        warm, stalls = Latencies(), Latencies()
        empty = 0
        next_at = time.perf_counter()
        for i in range(calls):
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if i:
                stalls.samples.append(loop_stalls.take())
            if sandbox.warm_workers == 0:
                empty += 1
                await wait_warm(sandbox, 1)
            loop_stalls.take()
            next_at = time.perf_counter() + pace_s
            warm.samples.append(await timed_run(sandbox, f"warm-{i}"))
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        stalls.samples.append(loop_stalls.take())
        description = str(sandbox.description)
    return WarmResults(memory, description, refill_s, refill_per_s, pace_s, warm, stalls, empty)


async def cold_calls(root_dir: Path, calls: int, warmup: int = 3) -> Latencies:
    """pool_size=0: each call starts its own worker. The first `warmup` are not kept."""
    latencies = Latencies()
    async with open_sandbox(root_dir, 0) as sandbox:
        for i in range(warmup + calls):
            await asyncio.sleep(COLD_GAP_S)
            elapsed = await timed_run(sandbox, f"cold-{i}")
            if i >= warmup:
                latencies.samples.append(elapsed)
    return latencies


@dataclass
class ConcurrentResults:
    pool_size: int
    batch_wall: Latencies
    per_call: Latencies
    stalls: Latencies  # per batch: the longest loop stall during it
    refill_wait: Latencies  # between batches, waiting for the pool to be full (unmeasured)


async def concurrent_calls(root_dir: Path, pool_size: int, batches: int) -> ConcurrentResults:
    result = ConcurrentResults(pool_size, Latencies(), Latencies(), Latencies(), Latencies())
    async with open_sandbox(root_dir, pool_size) as sandbox, LoopStalls() as loop_stalls:
        for b in range(batches):
            result.refill_wait.samples.append(await wait_warm(sandbox, pool_size))
            await asyncio.sleep(BATCH_GAP_S)  # the last batch's workers retired

            async def one(i: int, started: float, b: int = b) -> float:
                value = f"batch-{b}-{i}"
                check_echo(await sandbox.run(echo_job(value)), value, "concurrent call")
                return time.perf_counter() - started

            loop_stalls.take()
            started = time.perf_counter()
            ends = await asyncio.gather(*(one(i, started) for i in range(CONCURRENCY)))
            result.batch_wall.samples.append(time.perf_counter() - started)
            result.stalls.samples.append(loop_stalls.take())
            result.per_call.samples.extend(ends)
    return result


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


def script_tool_turn(fake: LeanClient, tool: str, arguments: dict[str, Any], i: int) -> None:
    """The fake's next two answers: a call of `tool`, then the reply."""
    call = {"id": f"call-{i}", "name": tool, "arguments": json.dumps(arguments)}
    script = [{"tool_calls": [call]}, {"content": REPLY}]
    lean_json(*fake.request("DELETE", "/_script"), "DELETE /_script")
    lean_json(*fake.request("POST", "/_script", script), "POST /_script")


def tool_turn(
    client: LeanClient, fake: LeanClient, agent_id: str, tool: str, i: int
) -> tuple[float, dict[str, Any]]:
    """A turn whose model calls `tool` (the custom echo or the built-in) and then replies;
    checks the tool ran and the reply came. Returns the latency and the tool's return."""
    value = f"v-{i}"
    arguments = {"value": value} if tool == TOOL_NAME else {"key": f"missing-{i}"}
    script_tool_turn(fake, tool, arguments, i)
    elapsed, response = send_message(client, agent_id, f"call {tool} {i}")
    replies = [m.get("content") for m in items_of(response, "assistant_message")]
    returns = items_of(response, "tool_return_message")
    if replies != [REPLY] or len(returns) != 1:
        raise BenchError(f"{tool} turn {i}: expected one tool return and {REPLY!r}: {response}")
    if tool == TOOL_NAME and (returns[0].get("status"), returns[0].get("tool_return")) != (
        "success",
        value,
    ):
        raise BenchError(f"custom tool turn {i}: the tool did not return {value!r}: {returns}")
    return elapsed, returns[0]


@dataclass
class HttpResults:
    custom: Latencies
    builtin: Latencies
    paired_difference: list[float]  # custom - built-in of the same pair, seconds
    unpaced: Latencies
    builtin_status: str
    server_rss_mib: float = 0.0  # the server process alone (not its sandbox workers)


def http_turns(server: Server, llm_url: str, agents: int, pairs: int, unpaced: int) -> HttpResults:
    """Custom-tool and built-in turns alternated on the same agents (which goes first
    alternates too); a turn that follows a custom-tool turn waits HTTP_QUIET_S, so the
    sandbox's work after the call (retiring the worker, starting its replacement) lands in
    neither turn. Then custom-tool turns back to back."""
    fake_url = llm_url.removesuffix("/v1")
    with LeanClient(server.base_url) as client, LeanClient(fake_url) as fake:
        lean_json(*fake.request("DELETE", "/_script"), "DELETE /_script")
        tool = lean_json(
            *client.request("POST", "/v1/tools/", {"source_code": TOOL_SOURCE}), "POST /v1/tools/"
        )
        if tool.get("name") != TOOL_NAME:
            raise BenchError(f"the custom tool is named {tool.get('name')!r}, not {TOOL_NAME}")
        ids = []
        for i in range(agents):
            body = agent_body(i) | {"tool_ids": [tool["id"]], "tools": [BUILTIN_TOOL]}
            agent = lean_json(*client.request("POST", "/v1/agents/", body), "create agent")
            names = {t.get("name") for t in agent.get("tools", [])}
            if not {TOOL_NAME, BUILTIN_TOOL} <= names:
                raise BenchError(f"agent {agent['id']} lacks a tool: it has {sorted(names)}")
            ids.append(agent["id"])
        # Warm-up, unmeasured: the first turn imports the model SDK; one turn of each kind.
        for n, agent_id in enumerate(ids):
            lean_json(*fake.request("DELETE", "/_script"), "DELETE /_script")
            send_message(client, agent_id, "hello")
            for tool_name in (TOOL_NAME, BUILTIN_TOOL):
                tool_turn(client, fake, agent_id, tool_name, -1 - n)
                time.sleep(HTTP_QUIET_S)

        custom, builtin, differences = Latencies(), Latencies(), []
        statuses: set[str] = set()
        quiet_at = time.perf_counter()
        for i in range(pairs):
            agent_id = ids[i % agents]
            order = (TOOL_NAME, BUILTIN_TOOL) if i % 2 == 0 else (BUILTIN_TOOL, TOOL_NAME)
            took: dict[str, float] = {}
            for tool_name in order:
                time.sleep(max(0.0, quiet_at - time.perf_counter()))
                took[tool_name], returned = tool_turn(client, fake, agent_id, tool_name, i)
                if tool_name == TOOL_NAME:
                    quiet_at = time.perf_counter() + HTTP_QUIET_S
                else:
                    statuses.add(str(returned.get("status")))
            custom.samples.append(took[TOOL_NAME])
            builtin.samples.append(took[BUILTIN_TOOL])
            differences.append(took[TOOL_NAME] - took[BUILTIN_TOOL])

        time.sleep(10 * HTTP_QUIET_S)  # the pool full again before the burst
        burst = Latencies()
        for i in range(unpaced):
            elapsed, _ = tool_turn(client, fake, ids[i % agents], TOOL_NAME, pairs + i)
            burst.samples.append(elapsed)
    return HttpResults(custom, builtin, differences, burst, "/".join(sorted(statuses)))


# --------------------------------------------------------------------------- main


@dataclass
class Config:
    warm: int
    cold: int
    pairs: int
    unpaced: int
    agents: int
    batches: int
    stock_loop: bool
    startup_timeout_s: float
    json_path: Path | None
    keep_data: bool
    quick: bool


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        description="Benchmark the process sandbox that runs custom tools.",
        epilog="Percentiles are nearest-rank: value at rank ceil(p/100 * n) of the sorted samples.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run with small counts")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--warm", type=int, help="warm in-process calls (500; 100 --quick)")
    parser.add_argument("--cold", type=int, help="cold in-process calls, pool 0 (100; 30 --quick)")
    parser.add_argument(
        "--pairs", type=int, help="custom-tool + built-in turn pairs over HTTP (300; 60 --quick)"
    )
    parser.add_argument(
        "--unpaced", type=int, help="custom-tool turns back to back over HTTP (100; 30 --quick)"
    )
    parser.add_argument("--agents", type=int, default=10, help="agents the turns go to (10)")
    parser.add_argument(
        "--batches", type=int, help="batches of 16 concurrent calls per pool size (20; 5 --quick)"
    )
    parser.add_argument(
        "--stock-loop",
        action="store_true",
        help="run the in-process parts on asyncio's own loop instead of uvloop (the server's)",
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=120.0, help="seconds to wait for /v1/health"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temp dir (logs, data)")
    args = parser.parse_args(argv)
    quick: bool = args.quick

    def pick(value: int | None, full: int, small: int) -> int:
        return value if value is not None else (small if quick else full)

    config = Config(
        warm=pick(args.warm, 500, 100),
        cold=pick(args.cold, 100, 30),
        pairs=pick(args.pairs, 300, 60),
        unpaced=pick(args.unpaced, 100, 30),
        agents=args.agents,
        batches=pick(args.batches, 20, 5),
        stock_loop=args.stock_loop,
        startup_timeout_s=args.startup_timeout,
        json_path=args.json,
        keep_data=args.keep_data,
        quick=quick,
    )
    for name in ("warm", "cold", "pairs", "unpaced", "agents", "batches"):
        if getattr(config, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return config


@dataclass
class Results:
    warm: WarmResults
    cold: Latencies
    http: HttpResults
    concurrent: list[ConcurrentResults] = field(default_factory=list)


def run_loop(config: Config, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs an in-process part on the server's event loop (uvloop) unless --stock-loop."""
    if not config.stock_loop:
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.run(main())
    return asyncio.run(main())


def with_log(exc: Exception, server: Server) -> BenchError:
    """The error with the server's own account of it, the useful part."""
    return BenchError(f"{exc}\n--- server log (tail) ---\n{server.process.log_tail()}")


def run(config: Config, workdir: Path) -> Results:
    processes: list[Process] = []

    try:
        with step(
            f"pool of {WARM_POOL}: worker memory, refill rate, {config.warm} paced warm calls"
        ):
            warm = run_loop(config, lambda: warm_calls(workdir / "warm", config.warm))
        with step(f"{config.cold} cold calls (pool 0)"):
            cold = run_loop(config, lambda: cold_calls(workdir / "cold", config.cold))
        concurrent = []
        for pool_size in CONCURRENT_POOL_SIZES:
            with step(
                f"{config.batches} batches of {CONCURRENCY} concurrent calls, pool {pool_size}"
            ):
                calls = functools.partial(
                    concurrent_calls, workdir / f"concurrent-{pool_size}", pool_size, config.batches
                )
                concurrent.append(run_loop(config, calls))

        with step("starting the fake OpenAI server"):
            fake, llm_url = start_fake_llm(workdir, nodelay=True)
            processes.append(fake)
        env = dict(
            os.environ,
            OPENAI_BASE_URL=llm_url,
            OPENAI_API_KEY="sk-bench-fake",
            KELPIE_SANDBOX_POOL_SIZE=str(SANDBOX_POOL_SIZE_DEFAULT),
        )
        data_dir = workdir / "server"
        data_dir.mkdir()
        with step("starting the server"):
            server = start_server(data_dir, env, workdir / "server.log", config.startup_timeout_s)
            processes.append(server.process)
        try:
            with step(
                f"{config.pairs} custom-tool + built-in turn pairs and {config.unpaced}"
                f" unpaced custom-tool turns over HTTP ({config.agents} agents)"
            ):
                http = http_turns(server, llm_url, config.agents, config.pairs, config.unpaced)
            http.server_rss_mib = psutil.Process(server.process.pid).memory_info().rss / MIB
            if server.process.exited() is not None:
                raise BenchError(f"the server exited with {server.process.exited()}")
        except (OSError, BenchError) as exc:
            raise with_log(exc, server) from exc
    finally:
        for proc in reversed(processes):
            proc.stop()
    return Results(warm=warm, cold=cold, http=http, concurrent=concurrent)


def ms(latencies: Latencies) -> dict[str, float]:
    return latencies.summary_ms()


def rows_of(r: Results) -> list[Row]:
    warm, cold = ms(r.warm.warm), ms(r.cold)
    custom, builtin = ms(r.http.custom), ms(r.http.builtin)
    added_p50 = custom["p50_ms"] - builtin["p50_ms"]
    added_p99 = custom["p99_ms"] - builtin["p99_ms"]
    unpaced = ms(r.http.unpaced)
    stalls = ms(r.warm.stalls)
    empty_pct = 100 * r.warm.empty / max(1, len(r.warm.warm.samples))
    m = r.warm.memory
    rows = [
        Row("Warm call, trivial tool, p50", warm["p50_ms"], "ms",
            f"< {TARGET_WARM_P50_MS:g} ms", warm["p50_ms"] < TARGET_WARM_P50_MS),
        Row("Warm call, trivial tool, p99", warm["p99_ms"], "ms",
            f"< {TARGET_WARM_P99_MS:g} ms", warm["p99_ms"] < TARGET_WARM_P99_MS),
        Row("  paced calls that found the pool empty", empty_pct, "%"),
        Row("  longest event-loop stall per warm call, p50", stalls["p50_ms"], "ms"),
        Row("  longest event-loop stall per warm call, p99", stalls["p99_ms"], "ms"),
        Row(f"Pool refill rate (pool of {WARM_POOL} emptied at once)", r.warm.refill_per_s,
            "workers/s"),
        Row("Cold call (pool 0: worker started per call), p50", cold["p50_ms"], "ms",
            f"< {TARGET_COLD_P50_MS:g} ms", cold["p50_ms"] < TARGET_COLD_P50_MS),
        Row("Cold call (pool 0), p99", cold["p99_ms"], "ms"),
        Row("HTTP turn, custom tool + reply, p50", custom["p50_ms"], "ms"),
        Row("HTTP turn, custom tool + reply, p99", custom["p99_ms"], "ms"),
        Row(f"HTTP turn, built-in {BUILTIN_TOOL} + reply, p50", builtin["p50_ms"], "ms"),
        Row(f"HTTP turn, built-in {BUILTIN_TOOL} + reply, p99", builtin["p99_ms"], "ms"),
        Row("  custom tool adds, p50", added_p50, "ms",
            f"< {TARGET_ADDED_P50_MS:g} ms", added_p50 < TARGET_ADDED_P50_MS),
        Row("  custom tool adds, p99", added_p99, "ms"),
        Row("HTTP turn, custom tool, back to back (unpaced), p50", unpaced["p50_ms"], "ms"),
        Row("HTTP turn, custom tool, back to back (unpaced), p99", unpaced["p99_ms"], "ms"),
    ]  # fmt: skip
    for c in r.concurrent:
        wall, call, stall = ms(c.batch_wall), ms(c.per_call), ms(c.stalls)
        rows += [
            Row(f"{CONCURRENCY} concurrent calls, pool {c.pool_size}: batch wall p50",
                wall["p50_ms"], "ms"),
            Row(f"{CONCURRENCY} concurrent calls, pool {c.pool_size}: batch wall p99",
                wall["p99_ms"], "ms"),
            Row("  per call p50", call["p50_ms"], "ms"),
            Row("  per call p99", call["p99_ms"], "ms"),
            Row("  longest event-loop stall per batch, p50", stall["p50_ms"], "ms"),
        ]  # fmt: skip
    rows += [
        Row(f"Idle worker RSS (process tree, mean of {m.workers})", m.rss_mib, "MiB"),
    ]
    if m.pss_mib is not None and m.uss_mib is not None:
        rows += [
            Row("Idle worker PSS", m.pss_mib, "MiB"),
            Row("Idle worker USS", m.uss_mib, "MiB"),
        ]
    return rows


def details_of(r: Results) -> dict[str, Any]:
    w = r.warm
    return {
        "sandbox": w.description,
        "worker_memory": {
            "workers": w.memory.workers,
            "processes_per_worker": w.memory.processes_per_worker,
            "rss_mib": w.memory.rss_mib,
            "pss_mib": w.memory.pss_mib,
            "uss_mib": w.memory.uss_mib,
            "python_process_rss_mib": w.memory.python_rss_mib,
        },
        "refill_s": w.refill_s,
        "refill_workers_per_s": w.refill_per_s,
        "warm_pace_ms": w.pace_s * 1000,
        "warm": ms(w.warm),
        "warm_calls_that_found_the_pool_empty": w.empty,
        "warm_longest_loop_stall_per_call": ms(w.stalls),
        "cold": ms(r.cold),
        "http_custom_turn": ms(r.http.custom),
        "http_builtin_turn": ms(r.http.builtin),
        "http_builtin_return_status": r.http.builtin_status,
        "http_paired_difference": {
            "p50_ms": percentile(sorted(r.http.paired_difference), 50) * 1000,
            "p99_ms": percentile(sorted(r.http.paired_difference), 99) * 1000,
        },
        "http_custom_turn_unpaced": ms(r.http.unpaced),
        "http_quiet_after_custom_turn_ms": HTTP_QUIET_S * 1000,
        "server_rss_mib_after_turns": r.http.server_rss_mib,
        "concurrent": [
            {
                "pool_size": c.pool_size,
                "concurrency": CONCURRENCY,
                "batch_wall": ms(c.batch_wall),
                "per_call": ms(c.per_call),
                "longest_loop_stall_per_batch": ms(c.stalls),
                "refill_wait_between_batches": ms(c.refill_wait),
            }
            for c in r.concurrent
        ],
    }


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    print(
        f"Kelpie sandbox benchmark: {config.warm} warm and {config.cold} cold calls,"
        f" {config.pairs} HTTP turn pairs, {config.batches} batches of {CONCURRENCY} concurrent"
        f" calls per pool size ({'asyncio' if config.stock_loop else 'uvloop'} in process)"
    )
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-sandbox-"))
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

    rows = rows_of(results)
    print_table(rows)
    print(f"Sandbox: {results.warm.description}")
    print(
        f"Warm calls paced every {results.warm.pace_s * 1000:.1f} ms"
        f" ({PACE_FRACTION:g} x the refill rate); HTTP turns after a custom-tool turn waited"
        f" {HTTP_QUIET_S * 1000:g} ms."
    )
    misses = [r.name.strip() for r in rows if r.passed is False]
    print("All targets met." if not misses else f"Missed: {', '.join(misses)}")

    if config.json_path is not None:
        settings = {
            "warm": config.warm,
            "cold": config.cold,
            "pairs": config.pairs,
            "unpaced": config.unpaced,
            "agents": config.agents,
            "batches": config.batches,
            "warm_pool": WARM_POOL,
            "pace_fraction": PACE_FRACTION,
            "concurrency": CONCURRENCY,
            "concurrent_pool_sizes": list(CONCURRENT_POOL_SIZES),
            "http_pool_size": SANDBOX_POOL_SIZE_DEFAULT,
            "loop": "asyncio" if config.stock_loop else "uvloop",
            "quick": config.quick,
        }
        write_results(config.json_path, settings, rows, details_of(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

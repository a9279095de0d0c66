"""Benchmark a real Kelpie server process over HTTP.

What it does, in order (see bench/README.md for the why):

1. Starts the tests' fake OpenAI-compatible server (tests/fakes/llm_server.py) on a free
   port and points the Kelpie server at it through
   OPENAI_BASE_URL / OPENAI_API_KEY.
2. Start-up: spawns `python -m kelpie serve` with a fresh data dir, times spawn ->
   first 200 from GET /v1/health (polled every 5 ms); repeated --startups times.
   The last server is kept running for everything below; its RSS right then is the
   idle RSS.
3. Creates --agents-create agents one at a time on one keep-alive client
   (throughput and per-request latency), then fills up to --agents-total agents with
   --fill-workers concurrent clients (only the total time is reported).
4. GET /v1/agents/{id} for random stored ids, and GET /v1/agents/?limit=50 (first
   page or after=<random id>), each timed per request.
5. Server RSS (psutil) with all agents stored.

Latencies are per request, measured with time.perf_counter around the client call
(request sent, full response body read). Percentiles use the nearest-rank method:
p-th percentile of n sorted values = value at 1-based rank ceil(p/100 * n).

    .venv/bin/python bench/bench_api.py            # full run (1,000 created, 10,000 stored)
    .venv/bin/python bench/bench_api.py --quick    # smoke run (100 created, 1,000 stored)
    .venv/bin/python bench/bench_api.py --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from _common import (
    BenchError,
    Latencies,
    LeanClient,
    Process,
    Row,
    Server,
    agent_body,
    agent_id_of,
    http_client,
    lean_json,
    print_table,
    process_tree_rss_mib,
    raise_on_sigterm,
    start_fake_llm,
    start_server,
    step,
    write_results,
)

LIST_LIMIT = 50
WARMUP_REQUESTS = 20  # unmeasured requests before each read benchmark
HTTPX_CREATES = 300  # agents also created one at a time with httpx, for comparison

# Targets (see bench/README.md).
TARGET_STARTUP_S = 1.0
TARGET_CREATE_PER_S = 500.0
TARGET_GET_P99_MS = 5.0
TARGET_LIST_P99_MS = 10.0

# Letta 0.16.8 on PostgreSQL, from /work/shared/platform-notes.md.
LETTA_STARTUP = "27-48 s"
LETTA_IDLE_RSS = "~470 MiB"
LETTA_CREATE = "18.6/s (4 parallel)"
LETTA_CREATE_P50 = "205 ms (4 parallel)"
LETTA_CREATE_P99 = "303 ms (4 parallel)"
LETTA_GET_P50 = "18-48 ms"
LETTA_GET_P99 = "26-71 ms"


# --------------------------------------------------------------------------- requests


def create_sequential(base_url: str, indices: range) -> tuple[list[str], Latencies, float]:
    """Create agents one at a time on one keep-alive client: ids, latencies, wall time."""
    ids: list[str] = []
    latencies = Latencies()
    with LeanClient(base_url) as client:
        started = time.perf_counter()
        for i in indices:
            t0 = time.perf_counter()
            status, raw = client.request("POST", "/v1/agents/", agent_body(i))
            latencies.samples.append(time.perf_counter() - t0)
            ids.append(lean_json(status, raw, "POST /v1/agents/")["id"])
        wall = time.perf_counter() - started
    return ids, latencies, wall


def create_sequential_httpx(base_url: str, indices: range) -> tuple[list[str], float]:
    """The same with httpx (the client the SDK is built on): ids and wall time."""
    ids: list[str] = []
    with http_client(base_url) as client:
        started = time.perf_counter()
        ids = [agent_id_of(client.post("/v1/agents/", json=agent_body(i))) for i in indices]
        wall = time.perf_counter() - started
    return ids, wall


def create_concurrent(base_url: str, indices: range, workers: int) -> tuple[list[str], float]:
    """Create agents from `workers` threads, one keep-alive client each: ids, wall time."""

    def work(share: Sequence[int]) -> list[str]:
        with http_client(base_url) as client:
            return [agent_id_of(client.post("/v1/agents/", json=agent_body(i))) for i in share]

    shares = [indices[w::workers] for w in range(workers)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(work, shares))
    wall = time.perf_counter() - started
    return [agent_id for ids in results for agent_id in ids], wall


def bench_get_agent(base_url: str, ids: Sequence[str], n: int, rng: random.Random) -> Latencies:
    latencies = Latencies()
    picks = [rng.choice(ids) for _ in range(n)]
    with LeanClient(base_url) as client:
        for agent_id in picks[:WARMUP_REQUESTS]:
            lean_json(*client.request("GET", f"/v1/agents/{agent_id}"), "warm-up GET")
        for agent_id in picks:
            t0 = time.perf_counter()
            status, raw = client.request("GET", f"/v1/agents/{agent_id}")
            latencies.samples.append(time.perf_counter() - t0)
            if lean_json(status, raw, f"GET /v1/agents/{agent_id}").get("id") != agent_id:
                raise BenchError(f"GET /v1/agents/{agent_id} returned another agent")
    return latencies


def bench_list_agents(base_url: str, ids: Sequence[str], n: int, rng: random.Random) -> Latencies:
    """Half first pages, half pages after a random stored id (seeded coin per request)."""
    latencies = Latencies()
    queries: list[dict[str, str | int]] = []
    for _ in range(n):
        if rng.random() < 0.5:
            queries.append({"limit": LIST_LIMIT})
        else:
            queries.append({"limit": LIST_LIMIT, "after": rng.choice(ids)})
    paths = [f"/v1/agents/?{urllib.parse.urlencode(params)}" for params in queries]
    with LeanClient(base_url) as client:
        for path in paths[:WARMUP_REQUESTS]:
            lean_json(*client.request("GET", path), "warm-up list")
        for params, path in zip(queries, paths, strict=True):
            t0 = time.perf_counter()
            status, raw = client.request("GET", path)
            latencies.samples.append(time.perf_counter() - t0)
            page = lean_json(status, raw, f"GET {path}")
            if not isinstance(page, list) or len(page) > LIST_LIMIT:
                raise BenchError(f"GET /v1/agents/?{params} did not return a page of <= 50")
            if "after" not in params and len(page) != min(LIST_LIMIT, len(ids)):
                raise BenchError(f"first page has {len(page)} agents, expected {LIST_LIMIT}")
    return latencies


def server_agent_count(base_url: str) -> int | None:
    """GET /v1/agents/count if the server has it (a sanity check only)."""
    with http_client(base_url) as client:
        try:
            response = client.get("/v1/agents/count")
        except httpx.HTTPError:
            return None
    if response.status_code != 200:
        return None
    with contextlib.suppress(ValueError):
        value = response.json()
        if isinstance(value, int):
            return value
    return None


# --------------------------------------------------------------------------- main


@dataclass
class Config:
    agents_create: int
    agents_total: int
    startups: int
    gets: int
    lists: int
    fill_workers: int
    seed: int
    startup_timeout_s: float
    json_path: Path | None
    keep_data: bool


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        description="Benchmark a real Kelpie server process over HTTP.",
        epilog="Percentiles are nearest-rank: value at rank ceil(p/100 * n) of the sorted samples.",
    )
    parser.add_argument(
        "--agents-create",
        type=int,
        help="agents created one at a time and measured (default 1000; 100 with --quick)",
    )
    parser.add_argument(
        "--agents-total",
        type=int,
        help="agents stored before the read benchmarks (default 10000; 1000 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 created, 1000 stored")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--startups", type=int, default=5, help="start-up repetitions (5)")
    parser.add_argument("--gets", type=int, default=2000, help="GET agent requests (2000)")
    parser.add_argument("--lists", type=int, default=1000, help="list agents requests (1000)")
    parser.add_argument(
        "--fill-workers", type=int, default=4, help="concurrent clients for the fill (4)"
    )
    parser.add_argument("--seed", type=int, default=1234, help="seed for the random picks")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for /v1/health before giving up (60)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the temp dir (data dirs, server and fake LLM logs) and print its path",
    )
    args = parser.parse_args(argv)
    create: int = (
        args.agents_create if args.agents_create is not None else (100 if args.quick else 1000)
    )
    total: int = (
        args.agents_total if args.agents_total is not None else (1000 if args.quick else 10_000)
    )
    if create < 1:
        parser.error("--agents-create must be at least 1")
    if total < create:
        parser.error(f"--agents-total ({total}) must be at least --agents-create ({create})")
    for name in ("startups", "gets", "lists", "fill_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return Config(
        agents_create=create,
        agents_total=total,
        startups=args.startups,
        gets=args.gets,
        lists=args.lists,
        fill_workers=args.fill_workers,
        seed=args.seed,
        startup_timeout_s=args.startup_timeout,
        json_path=args.json,
        keep_data=args.keep_data,
    )


@dataclass
class LoadResults:
    idle_rss: float
    n_create: int
    create_lat: Latencies
    create_wall: float
    n_httpx: int
    httpx_wall: float
    n_fill: int
    fill_wall: float
    stored: int | None
    get_lat: Latencies
    list_lat: Latencies
    loaded_rss: float


def load_phase(config: Config, server: Server) -> LoadResults:
    """Everything measured against the one server left running after the start-ups."""
    idle_rss = process_tree_rss_mib(server.process.pid)
    base = server.base_url

    n_create = config.agents_create
    with step(f"creating {n_create} agents one at a time"):
        ids, create_lat, create_wall = create_sequential(base, range(n_create))
    n_httpx = min(HTTPX_CREATES, config.agents_total - n_create)
    with step(f"creating {n_httpx} more one at a time with httpx"):
        more_ids, httpx_wall = create_sequential_httpx(base, range(n_create, n_create + n_httpx))
    ids.extend(more_ids)
    n_create_done = n_create + n_httpx

    n_fill = config.agents_total - n_create_done
    fill_wall = 0.0
    if n_fill:
        with step(f"filling to {config.agents_total} agents ({config.fill_workers} clients)"):
            more, fill_wall = create_concurrent(
                base, range(n_create_done, config.agents_total), config.fill_workers
            )
        ids.extend(more)
    if len(set(ids)) != len(ids):
        raise BenchError("the server handed out the same agent id twice")
    stored = server_agent_count(base)

    rng = random.Random(config.seed)
    with step(f"GET /v1/agents/{{id}} x{config.gets}"):
        get_lat = bench_get_agent(base, ids, config.gets, rng)
    with step(f"GET /v1/agents/?limit={LIST_LIMIT} x{config.lists}"):
        list_lat = bench_list_agents(base, ids, config.lists, rng)

    if server.process.exited() is not None:
        raise BenchError(f"server exited with {server.process.exited()} during the benchmark")
    loaded_rss = process_tree_rss_mib(server.process.pid)
    return LoadResults(
        idle_rss=idle_rss,
        n_create=n_create,
        create_lat=create_lat,
        create_wall=create_wall,
        n_httpx=n_httpx,
        httpx_wall=httpx_wall,
        n_fill=n_fill,
        fill_wall=fill_wall,
        stored=stored,
        get_lat=get_lat,
        list_lat=list_lat,
        loaded_rss=loaded_rss,
    )


def run(config: Config, workdir: Path) -> tuple[list[Row], dict[str, Any]]:
    processes: list[Process] = []
    try:
        with step("starting the fake OpenAI server"):
            fake, llm_url = start_fake_llm(workdir)
            processes.append(fake)
        env = dict(os.environ, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="sk-bench-fake")

        # Start-up: fresh data dir each time; the last server stays up for the rest.
        startups: list[float] = []
        server: Server | None = None
        with step(f"start-up x{config.startups}"):
            for run_no in range(config.startups):
                if server is not None:
                    server.process.stop()
                    processes.remove(server.process)
                data_dir = workdir / f"data-{run_no}"
                data_dir.mkdir()
                server = start_server(
                    data_dir, env, workdir / f"server-{run_no}.log", config.startup_timeout_s
                )
                processes.append(server.process)
                startups.append(server.startup_s)
        assert server is not None
        try:
            results = load_phase(config, server)
        except (httpx.HTTPError, BenchError) as exc:
            # Whatever went wrong, the server's own account of it is the useful part.
            raise BenchError(
                f"{exc}\n--- server log (tail) ---\n{server.process.log_tail()}"
            ) from exc
    finally:
        for proc in reversed(processes):
            proc.stop()

    r = results
    create_rate = r.n_create / r.create_wall
    create_ms = r.create_lat.summary_ms()
    get_ms = r.get_lat.summary_ms()
    list_ms = r.list_lat.summary_ms()
    startup_median = statistics.median(startups)
    startup_max = max(startups)
    total = config.agents_total

    rows = [
        Row("Start-up, median", startup_median, "s", "< 1 s",
            startup_median < TARGET_STARTUP_S, LETTA_STARTUP),
        Row("Start-up, max", startup_max, "s", "< 1 s",
            startup_max < TARGET_STARTUP_S, LETTA_STARTUP),
        Row("Idle RSS after start-up", r.idle_rss, "MiB", letta=LETTA_IDLE_RSS),
        Row(f"Create {r.n_create} agents, sequential", create_rate, "agents/s",
            f">= {TARGET_CREATE_PER_S:.0f}/s", create_rate >= TARGET_CREATE_PER_S, LETTA_CREATE),
        Row("Create agent p50", create_ms["p50_ms"], "ms", letta=LETTA_CREATE_P50),
        Row("Create agent p99", create_ms["p99_ms"], "ms", letta=LETTA_CREATE_P99),
    ]  # fmt: skip
    if r.n_httpx:
        rows.append(
            Row(f"Create {r.n_httpx}, sequential, httpx client", r.n_httpx / r.httpx_wall,
                "agents/s", letta=LETTA_CREATE)
        )  # fmt: skip
    if r.n_fill:
        rows.append(
            Row(f"Fill to {total} ({config.fill_workers} clients), total", r.fill_wall, "s")
        )
    rows += [
        Row("GET agent p50", get_ms["p50_ms"], "ms", letta=LETTA_GET_P50),
        Row("GET agent p99", get_ms["p99_ms"], "ms", f"< {TARGET_GET_P99_MS:g} ms",
            get_ms["p99_ms"] < TARGET_GET_P99_MS, LETTA_GET_P99),
        Row(f"List agents (limit {LIST_LIMIT}) p50", list_ms["p50_ms"], "ms"),
        Row(f"List agents (limit {LIST_LIMIT}) p99", list_ms["p99_ms"], "ms",
            f"< {TARGET_LIST_P99_MS:g} ms", list_ms["p99_ms"] < TARGET_LIST_P99_MS),
        Row(f"Server RSS with {total} agents", r.loaded_rss, "MiB"),
    ]  # fmt: skip

    details: dict[str, Any] = {
        "startup_s": startups,
        "startup_median_s": startup_median,
        "startup_max_s": startup_max,
        "idle_rss_mib": r.idle_rss,
        "create": {
            "agents": r.n_create,
            "wall_s": r.create_wall,
            "per_s": create_rate,
            **create_ms,
        },
        "create_httpx": {
            "agents": r.n_httpx,
            "wall_s": r.httpx_wall,
            "per_s": r.n_httpx / r.httpx_wall if r.httpx_wall else None,
        },
        "fill": {
            "agents": r.n_fill,
            "workers": config.fill_workers,
            "wall_s": r.fill_wall,
            "per_s": r.n_fill / r.fill_wall if r.fill_wall else None,
        },
        "agents_stored": total,
        "agents_counted_by_server": r.stored,
        "get_agent": get_ms,
        "list_agents": {"limit": LIST_LIMIT, **list_ms},
        "loaded_rss_mib": r.loaded_rss,
    }
    return rows, details


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    print(
        f"Kelpie API benchmark: {config.agents_create} created sequentially, "
        f"{config.agents_total} stored, {config.startups} start-ups, "
        f"{config.gets} GETs, {config.lists} lists (seed {config.seed})"
    )
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-"))
    try:
        rows, details = run(config, workdir)
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if config.keep_data:
            print(f"Kept data dirs and logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print_table(rows)
    if details["agents_counted_by_server"] not in (None, config.agents_total):
        print(
            f"warning: server counts {details['agents_counted_by_server']} agents, "
            f"expected {config.agents_total}"
        )
    misses = [r.name for r in rows if r.passed is False]
    print("All targets met." if not misses else f"Missed: {', '.join(misses)}")

    if config.json_path is not None:
        settings = {
            "agents_create": config.agents_create,
            "agents_total": config.agents_total,
            "startups": config.startups,
            "gets": config.gets,
            "lists": config.lists,
            "fill_workers": config.fill_workers,
            "seed": config.seed,
        }
        write_results(config.json_path, settings, rows, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())

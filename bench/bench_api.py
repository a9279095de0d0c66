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
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FAKE_LLM = REPO_ROOT / "tests" / "fakes" / "llm_server.py"

HOST = "127.0.0.1"
MODEL = "openai/gpt-4o-mini"
HEALTH_POLL_S = 0.005
LIST_LIMIT = 50
WARMUP_REQUESTS = 20  # unmeasured requests before each read benchmark
HTTPX_CREATES = 300  # agents also created one at a time with httpx, for comparison
MIB = 1024 * 1024

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


class BenchError(Exception):
    """The benchmark cannot go on (server died, bad response, timeout)."""


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], p: int) -> float:
    """Nearest-rank percentile of already sorted values.

    The p-th percentile (0 < p <= 100) of n values is the value at 1-based rank
    ceil(p * n / 100): the smallest value such that at least p% of the values are
    less than or equal to it. Computed in integers so that 99 * 2000 / 100 is exactly
    rank 1980, not 1981 through float rounding.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} out of (0, 100]")
    n = len(sorted_values)
    rank = -(-p * n // 100)  # ceil(p * n / 100)
    return sorted_values[max(rank, 1) - 1]


@dataclass
class Latencies:
    """Per-request latencies in seconds."""

    samples: list[float] = field(default_factory=list)

    def summary_ms(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        return {
            "n": len(ordered),
            "p50_ms": percentile(ordered, 50) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000,
            "mean_ms": statistics.fmean(ordered) * 1000,
        }


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A child process in its own session, output going to a log file.

    stop() signals the whole process group, so anything the child spawned goes too.
    """

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.popen = subprocess.Popen(
                self.args,
                env=dict(env),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace_s: float = 5.0) -> None:
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=grace_s)
        # Children that outlived the leader (same process group) go as well.
        self._signal_group(signal.SIGKILL)
        self._log.close()


def process_tree_rss_mib(pid: int) -> float:
    """RSS of the process and all its descendants, in MiB."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += int(proc.memory_info().rss)
    return total / MIB


def http_client(base_url: str, timeout: float = 30.0) -> httpx.Client:
    # trust_env=False: an HTTP(S)_PROXY in the environment must not route 127.0.0.1.
    return httpx.Client(base_url=base_url, timeout=timeout, trust_env=False)


class LeanClient:
    """A keep-alive HTTP/1.1 client on the standard library's http.client, for the timed
    loops. httpx spends ~0.7 ms of CPU per request on this 2-core machine, CPU the server
    then lacks; this client spends ~0.1 ms, so the figures are the server's own."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        assert parts.hostname is not None, base_url
        assert parts.port is not None, base_url
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def __enter__(self) -> LeanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._connection.close()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        headers = {"content-type": "application/json"} if payload is not None else {}
        self._connection.request(method, path, payload, headers)
        response = self._connection.getresponse()
        return response.status, response.read()


def lean_json(status: int, raw: bytes, what: str) -> Any:
    if status != 200:
        raise BenchError(f"{what} -> {status}: {raw[:500]!r}")
    return json.loads(raw)


def start_fake_llm(workdir: Path, timeout_s: float = 20.0) -> tuple[Process, str]:
    """Start the fake OpenAI server; returns it and its base URL (ending in /v1)."""
    script = SHARED_FAKE_LLM
    port = free_port()
    proc = Process(
        [sys.executable, str(script), "--port", str(port)], os.environ, workdir / "fake_llm.log"
    )
    base_url = f"http://{HOST}:{port}/v1"
    deadline = time.perf_counter() + timeout_s
    with http_client(base_url, timeout=2.0) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if client.get("/models").status_code == 200:
                    return proc, base_url
            if proc.exited() is not None:
                raise BenchError(
                    f"fake LLM server {script} exited with {proc.exited()}:\n{proc.log_tail()}"
                )
            if time.perf_counter() > deadline:
                raise BenchError(f"fake LLM server {script} not ready after {timeout_s} s")
            time.sleep(0.02)


@dataclass
class Server:
    process: Process
    base_url: str
    startup_s: float


def start_server(
    data_dir: Path, env: Mapping[str, str], log_path: Path, timeout_s: float
) -> Server:
    """Spawn `python -m kelpie serve` and time spawn -> first 200 from GET /v1/health."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    args = [
        sys.executable,
        "-m",
        "kelpie",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    # The client exists before the clock starts: building one is not the server's time.
    with http_client(base_url, timeout=2.0) as client:
        started = time.perf_counter()
        proc = Process(args, env, log_path)
        try:
            deadline = started + timeout_s
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v1/health").status_code == 200:
                        return Server(proc, base_url, time.perf_counter() - started)
                code = proc.exited()
                if code is not None:
                    raise BenchError(
                        f"server exited with {code} before it was healthy:\n"
                        f"$ {' '.join(args)}\n{proc.log_tail()}"
                    )
                if time.perf_counter() > deadline:
                    raise BenchError(f"server not healthy after {timeout_s} s:\n{proc.log_tail()}")
                time.sleep(HEALTH_POLL_S)
        except BaseException:
            proc.stop()
            raise


# --------------------------------------------------------------------------- requests


def agent_body(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-{i}",
        "model": MODEL,
        "memory_blocks": [
            {"label": "human", "value": f"The human is benchmark user number {i}."},
            {"label": "persona", "value": "I am a helpful assistant used for benchmarking."},
        ],
        "tags": ["bench"],
    }


def expect(response: httpx.Response, *statuses: int) -> None:
    if response.status_code not in statuses:
        request = response.request
        raise BenchError(
            f"{request.method} {request.url} -> {response.status_code}: {response.text[:500]}"
        )


def agent_id_of(response: httpx.Response) -> str:
    expect(response, 200, 201)
    payload = response.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise BenchError(f"agent create returned no id: {response.text[:500]}")
    agent_id: str = payload["id"]
    return agent_id


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


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str = "-"
    passed: bool | None = None  # None: reported, no target
    letta: str = "-"

    @property
    def status(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "MISS")

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 4),
            "unit": self.unit,
            "target": None if self.target == "-" else self.target,
            "status": self.status,
            "letta_0_16_8": None if self.letta == "-" else self.letta,
        }


def format_value(value: float, unit: str) -> str:
    if unit in ("ms", "s"):
        return f"{value:.3f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:,.1f} {unit}"


def print_table(rows: Sequence[Row]) -> None:
    header = ("Benchmark", "Result", "Target", "Status", "Letta 0.16.8")
    cells = [header] + [
        (r.name, format_value(r.value, r.unit), r.target, r.status, r.letta) for r in rows
    ]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        return "  ".join(padded).rstrip()

    print()
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in cells[1:]:
        print(line(row))
    print()


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


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    print(f"- {title} ...", end=" ", flush=True)
    started = time.perf_counter()
    yield
    print(f"done in {time.perf_counter() - started:.1f} s", flush=True)


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
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
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
        payload = {
            "config": {
                "agents_create": config.agents_create,
                "agents_total": config.agents_total,
                "startups": config.startups,
                "gets": config.gets,
                "lists": config.lists,
                "fill_workers": config.fill_workers,
                "seed": config.seed,
                "percentile_method": "nearest-rank",
            },
            "environment": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
            "rows": [r.as_json() for r in rows],
            "details": details,
        }
        config.json_path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"Wrote {config.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

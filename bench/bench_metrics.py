"""Benchmark what metrics cost a message round trip (issue 14: < 5% at p50).

Four `python -m kelpie serve` processes side by side, two with metrics on (the default)
and two with `KELPIE_METRICS=0`, started in the order on, off, off, on, all answered by
the tests' fake OpenAI server at once (TCP_NODELAY, see _common.start_fake_llm). Two
servers a setting, because two processes of the same setting differ by a few percent at
p50 on their own (memory layout, CPU placement). All of them log one line per request
(the request log is not switched off); the sandbox pool is off (plain turns never use it).
Each server gets 10 agents and a warm-up turn per agent; then JSON turns (POST
/v1/agents/{id}/messages, one model call each) go to the servers in blocks, in an order
reversed every round, round-robin over the agents, so drift of the machine falls on all
alike. Reports p50 and p99 of each setting (the servers' samples pooled) and the
difference at p50; then the time of one `/metrics` scrape.

    .venv/bin/python bench/bench_metrics.py              # 2,000 turns a server, ~2 min
    .venv/bin/python bench/bench_metrics.py --quick      # 300 turns a server
    .venv/bin/python bench/bench_metrics.py --json results.json

Latencies use time.perf_counter; percentiles are nearest-rank (rank ceil(p/100 * n)).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _common import (
    BenchError,
    Latencies,
    LeanClient,
    Process,
    Row,
    agent_body,
    lean_json,
    print_table,
    raise_on_sigterm,
    start_fake_llm,
    start_server,
    step,
    write_results,
)

AGENTS = 10
BLOCK_TURNS = 50
# Server settings in start order: two processes a setting (see the docstring).
SERVERS = (("on-1", "1"), ("off-1", "0"), ("off-2", "0"), ("on-2", "1"))
OVERHEAD_P50_PCT_MAX = 5.0
SCRAPES = 50


@dataclass
class Config:
    turns: int
    startup_timeout_s: float
    json_path: Path | None
    keep_data: bool


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=None, help="turns per server (2000)")
    parser.add_argument("--quick", action="store_true", help="300 turns per server")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args(argv)
    turns = args.turns or (300 if args.quick else 2000)
    return Config(turns, args.startup_timeout, args.json, args.keep_data)


def send(client: LeanClient, agent_id: str, text: str) -> float:
    body = {"messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    status, raw = client.request("POST", f"/v1/agents/{agent_id}/messages", body)
    elapsed = time.perf_counter() - started
    lean_json(status, raw, f"POST /v1/agents/{agent_id}/messages")
    return elapsed


def prepared_agents(client: LeanClient) -> list[str]:
    ids = [
        lean_json(*client.request("POST", "/v1/agents/", agent_body(i)), "create")["id"]
        for i in range(AGENTS)
    ]
    for agent_id in ids:  # warm-up: the first turn of a process imports the model SDK
        send(client, agent_id, "hello")
    return ids


def alternate(clients: dict[str, LeanClient], turns: int) -> dict[str, Latencies]:
    """`turns` turns on each server, in blocks of BLOCK_TURNS, the order flipped each round."""
    agents = {name: prepared_agents(client) for name, client in clients.items()}
    latencies = {name: Latencies() for name in clients}
    order = list(clients)
    done = 0
    while done < turns:
        block = min(BLOCK_TURNS, turns - done)
        for name in order:
            for i in range(done, done + block):
                elapsed = send(clients[name], agents[name][i % AGENTS], f"hi {i}")
                latencies[name].samples.append(elapsed)
        done += block
        order.reverse()
    return latencies


def scrape_ms(client: LeanClient) -> Latencies:
    scrapes = Latencies()
    for _ in range(SCRAPES):
        started = time.perf_counter()
        status, raw = client.request("GET", "/metrics")
        scrapes.samples.append(time.perf_counter() - started)
        if status != 200 or b"kelpie_turns_total" not in raw:
            raise BenchError(f"GET /metrics -> {status}: {raw[:300]!r}")
    return scrapes


def run(config: Config, workdir: Path) -> tuple[list[Row], dict[str, object]]:
    processes: list[Process] = []
    try:
        with step("starting the fake OpenAI server"):
            fake, llm_url = start_fake_llm(workdir, nodelay=True)
            processes.append(fake)
        base = dict(os.environ, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="sk-bench-fake")
        base["KELPIE_SANDBOX_POOL_SIZE"] = "0"
        urls = {}
        with step("starting four servers (metrics on, off, off, on)"):
            for name, switch in SERVERS:
                data_dir = workdir / f"data-{name}"
                data_dir.mkdir()
                env = dict(base, KELPIE_METRICS=switch)
                log_path = workdir / f"server-{name}.log"
                server = start_server(data_dir, env, log_path, config.startup_timeout_s)
                processes.append(server.process)
                urls[name] = server.base_url
        with contextlib.ExitStack() as stack:
            clients = {name: stack.enter_context(LeanClient(url)) for name, url in urls.items()}
            with step(f"{config.turns} turns on each server, alternating"):
                by_server = alternate(clients, config.turns)
            with step(f"{SCRAPES} scrapes of /metrics"):
                scrapes = scrape_ms(clients["on-1"])
    finally:
        for process in reversed(processes):
            process.stop()
    pooled = {"on": Latencies(), "off": Latencies()}
    for name, latencies in by_server.items():
        pooled[name.split("-")[0]].samples.extend(latencies.samples)
    on_ms, off_ms = pooled["on"].summary_ms(), pooled["off"].summary_ms()
    overhead_pct = (on_ms["p50_ms"] - off_ms["p50_ms"]) / off_ms["p50_ms"] * 100
    rows = [
        Row("Message round trip p50, metrics off", off_ms["p50_ms"], "ms"),
        Row("Message round trip p50, metrics on", on_ms["p50_ms"], "ms"),
        Row("Message round trip p99, metrics off", off_ms["p99_ms"], "ms"),
        Row("Message round trip p99, metrics on", on_ms["p99_ms"], "ms"),
        Row(
            "Metrics overhead at p50",
            overhead_pct,
            "%",
            target=f"< {OVERHEAD_P50_PCT_MAX:g} %",
            passed=overhead_pct < OVERHEAD_P50_PCT_MAX,
        ),
        Row("GET /metrics p50", scrapes.summary_ms()["p50_ms"], "ms"),
    ]
    details: dict[str, object] = {
        "on_ms": on_ms,
        "off_ms": off_ms,
        "by_server_ms": {name: lat.summary_ms() for name, lat in by_server.items()},
        "scrape_ms": scrapes.summary_ms(),
    }
    return rows, details


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    print(
        f"Kelpie metrics overhead: {config.turns} plain turns on each of {len(SERVERS)}"
        f" servers, {AGENTS} agents each"
    )
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-metrics-"))
    try:
        rows, details = run(config, workdir)
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if config.keep_data:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows)
    if config.json_path is not None:
        settings = {"turns": config.turns, "agents": AGENTS, "servers": [n for n, _ in SERVERS]}
        write_results(config.json_path, settings, rows, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())

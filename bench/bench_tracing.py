"""Benchmark what metrics and tracing together cost a message round trip (issue 14: < 5% at
p50).

Four `python -m kelpie serve` processes side by side, as in bench_metrics.py: two with
metrics and tracing on (`KELPIE_METRICS=1 KELPIE_OTEL=1`, spans exported over OTLP/HTTP by
the SDK's batch processor to a collector in this process) and two with both off, started
in the order on, off, off, on, all answered by the tests' fake OpenAI server at once. Each
server gets 10 agents and a warm-up turn per agent; then JSON turns go to the servers in
blocks, in an order reversed every round, so drift of the machine falls on all alike.
Reports p50 and p99 of each setting (the servers' samples pooled), the difference at p50,
and the spans the collector received per traced turn (checked: every turn is traced).

    .venv/bin/python bench/bench_tracing.py              # 2,000 turns a server, ~2 min
    .venv/bin/python bench/bench_tracing.py --quick      # 300 turns a server
    .venv/bin/python bench/bench_tracing.py --json results.json

Needs the `otel` extra (`pip install -e '.[otel]'`). Latencies use time.perf_counter;
percentiles are nearest-rank (rank ceil(p/100 * n)).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _common import (
    BenchError,
    Latencies,
    LeanClient,
    Process,
    Row,
    print_table,
    raise_on_sigterm,
    start_fake_llm,
    start_server,
    step,
    write_results,
)
from bench_metrics import AGENTS, alternate

# Server settings in start order: two processes a setting (see bench_metrics.py).
SERVERS = (("on-1", "1"), ("off-1", "0"), ("off-2", "0"), ("on-2", "1"))
OVERHEAD_P50_PCT_MAX = 5.0
# A plain turn: request, turn, step, model call, two store commits.
SPANS_PER_PLAIN_TURN = 6


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


class Collector:
    """An OTLP/HTTP trace receiver: counts the spans of each export by name."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.spans: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                names = [
                    span.name
                    for resource in request.resource_spans
                    for scope in resource.scope_spans
                    for span in scope.spans
                ]
                with collector.lock:
                    collector.spans.update(names)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextlib.contextmanager
    def running(self) -> Iterator[Collector]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def run(config: Config, workdir: Path) -> tuple[list[Row], dict[str, object]]:
    processes: list[Process] = []
    with Collector().running() as collector:
        try:
            with step("starting the fake OpenAI server"):
                fake, llm_url = start_fake_llm(workdir, nodelay=True)
                processes.append(fake)
            base = dict(os.environ, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="sk-bench-fake")
            base["KELPIE_SANDBOX_POOL_SIZE"] = "0"
            # The exporter (requests) must reach the collector, not a proxy.
            base["NO_PROXY"] = base["no_proxy"] = "127.0.0.1,localhost"
            for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
                base.pop(name, None)
            urls = {}
            with step("starting four servers (metrics and tracing on, off, off, on)"):
                for name, switch in SERVERS:
                    data_dir = workdir / f"data-{name}"
                    data_dir.mkdir()
                    env = dict(base, KELPIE_METRICS=switch, KELPIE_OTEL=switch)
                    if switch == "1":
                        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url
                    log_path = workdir / f"server-{name}.log"
                    server = start_server(data_dir, env, log_path, config.startup_timeout_s)
                    processes.append(server.process)
                    urls[name] = server.base_url
            with contextlib.ExitStack() as stack:
                clients = {n: stack.enter_context(LeanClient(url)) for n, url in urls.items()}
                with step(f"{config.turns} turns on each server, alternating"):
                    by_server = alternate(clients, config.turns)
        finally:
            # A server's exit exports the spans still queued (SIGTERM: a graceful stop).
            for process in reversed(processes):
                process.stop(grace_s=15.0)
        with collector.lock:
            spans = collections.Counter(collector.spans)
    pooled = {"on": Latencies(), "off": Latencies()}
    for name, latencies in by_server.items():
        pooled[name.split("-")[0]].samples.extend(latencies.samples)
    on_ms, off_ms = pooled["on"].summary_ms(), pooled["off"].summary_ms()
    overhead_pct = (on_ms["p50_ms"] - off_ms["p50_ms"]) / off_ms["p50_ms"] * 100
    traced_turns = 2 * (config.turns + AGENTS)  # the warm-up turns are traced too
    turns_seen = spans["kelpie.turn"]
    if turns_seen != traced_turns:
        raise BenchError(f"the collector got {turns_seen} turn spans, not {traced_turns}")
    spans_per_turn = sum(spans.values()) / traced_turns
    rows = [
        Row("Message round trip p50, both off", off_ms["p50_ms"], "ms"),
        Row("Message round trip p50, metrics + tracing on", on_ms["p50_ms"], "ms"),
        Row("Message round trip p99, both off", off_ms["p99_ms"], "ms"),
        Row("Message round trip p99, metrics + tracing on", on_ms["p99_ms"], "ms"),
        Row(
            "Metrics + tracing overhead at p50",
            overhead_pct,
            "%",
            target=f"< {OVERHEAD_P50_PCT_MAX:g} %",
            passed=overhead_pct < OVERHEAD_P50_PCT_MAX,
        ),
        Row(
            "Spans exported per traced turn",
            spans_per_turn,
            "",
            target=f">= {SPANS_PER_PLAIN_TURN}",
            passed=spans_per_turn >= SPANS_PER_PLAIN_TURN,
        ),
    ]
    details: dict[str, object] = {
        "on_ms": on_ms,
        "off_ms": off_ms,
        "by_server_ms": {name: lat.summary_ms() for name, lat in by_server.items()},
        "spans_by_name": dict(spans),
    }
    return rows, details


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    print(
        f"Kelpie metrics + tracing overhead: {config.turns} plain turns on each of"
        f" {len(SERVERS)} servers, {AGENTS} agents each"
    )
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-tracing-"))
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

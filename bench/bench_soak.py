"""Endurance: N clients on N agents against a real `kelpie serve` for a long time.

Starts the tests' fake OpenAI server (the scripted model: it answers each request at
once, with TCP_NODELAY) and a `python -m kelpie serve` process pointed at it, creates N
agents, then runs N client threads, each sending plain messages to its own agent
(`POST /v1/agents/{id}/messages`) in a loop for `--minutes`. Each agent's history grows by
two in-context messages a turn (the user's and the reply); by default the context window
is so large that nothing is compacted, and with `--context-window` (tokens) agents compact
as they would under a real model's window, so history levels off as in real use. Reported
per minute: turns/s, p50 and p99 latency, the server's RSS and its CPU per turn (utime +
stime from /proc/<pid>/stat over the minute, divided by the turns of that minute), and the
in-context length of agent 0. A server whose per-turn work grew with history shows CPU per
turn climbing minute by minute; one that leaks shows RSS climbing without levelling off.

    .venv/bin/python bench/bench_soak.py                    # 30 min, 8 clients
    .venv/bin/python bench/bench_soak.py --minutes 3 --clients 8
    .venv/bin/python bench/bench_soak.py --minutes 60 --context-window 32000
    .venv/bin/python bench/bench_soak.py --minutes 5 --clients 50 --json soak.json
    .venv/bin/python bench/bench_soak.py --minutes 15 --heap-profile   # what grows

With `--heap-profile` the server runs under tracemalloc (slower: its figures are not the
soak's) and the heap after minute 5 is compared with the heap at the end: the lines whose
live allocations grew the most are printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _common import (
    MODEL,
    BenchError,
    LeanClient,
    Process,
    Row,
    http_client,
    lean_json,
    percentile,
    print_table,
    process_tree_rss_mib,
    raise_on_sigterm,
    start_fake_llm,
    start_server,
    step,
    write_results,
)

MINUTES_DEFAULT = 30.0
CLIENTS_DEFAULT = 8
CONTEXT_WINDOW_DEFAULT = 10_000_000  # no compaction during the run
# RSS growth is measured from the end of this minute (the target: < 5% after it).
RSS_SETTLED_MINUTE = 5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HEAP_LAUNCHER = Path(__file__).resolve().parent / "_heap_serve.py"
HEAP_SNAPSHOT_TIMEOUT_S = 120.0
HEAP_TOP_LINES = 25


def in_context_messages(base_url: str, agent_id: str) -> int:
    """Agent 0's in-context length; -1 when the server did not answer within the timeout
    (reported, not fatal: a stall is a finding of the run)."""
    started = time.perf_counter()
    try:
        with http_client(base_url) as check:
            agent = check.get(f"/v1/agents/{agent_id}").json()
    except httpx.TimeoutException:
        print(f"  ! GET agent took over {time.perf_counter() - started:.0f} s", flush=True)
        return -1
    return len(agent.get("message_ids") or [])


def cpu_seconds(pid: int, *, thread: int | None = None) -> float:
    """utime + stime of the process (or of one of its threads), from /proc."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path, "rb") as handle:
        raw = handle.read().decode()
    # Fields after the command name (which may hold spaces) start at ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


@dataclass
class Minute:
    index: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


class Recorder:
    """Latencies by the minute they ended in, shared by the client threads."""

    def __init__(self, started: float) -> None:
        self._started = started
        self._lock = threading.Lock()
        self.minutes: dict[int, Minute] = {}
        self.turns_total = 0

    def record(self, ended: float, latency: float | None) -> None:
        index = int((ended - self._started) // 60)
        with self._lock:
            minute = self.minutes.setdefault(index, Minute(index))
            if latency is None:
                minute.errors += 1
            else:
                minute.latencies.append(latency)
                self.turns_total += 1


def client_loop(base_url: str, agent_id: str, deadline: float, recorder: Recorder) -> None:
    path = f"/v1/agents/{agent_id}/messages"
    n = 0
    with LeanClient(base_url, timeout=120.0) as client:
        while time.perf_counter() < deadline:
            body = {"messages": [{"role": "user", "content": f"soak message {n}"}]}
            started = time.perf_counter()
            try:
                status, _ = client.request("POST", path, body)
            except OSError:
                recorder.record(time.perf_counter(), None)
                time.sleep(0.1)
                continue
            ended = time.perf_counter()
            recorder.record(ended, (ended - started) if status == 200 else None)
            n += 1


class HeapProfile:
    """Snapshots of the server's heap, taken by SIGUSR1 (see _heap_serve.py)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.taken = 0

    def take(self, pid: int) -> None:
        self.taken += 1
        path = self.directory / f"heap-{self.taken}.snapshot"
        os.kill(pid, signal.SIGUSR1)
        deadline = time.perf_counter() + HEAP_SNAPSHOT_TIMEOUT_S
        size = -1
        while True:  # written when its size stops changing
            time.sleep(1.0)
            now = path.stat().st_size if path.exists() else -1
            if now > 0 and now == size:
                return
            if time.perf_counter() > deadline:
                raise BenchError(f"no heap snapshot at {path} after {HEAP_SNAPSHOT_TIMEOUT_S} s")
            size = now

    def growth(self) -> list[dict[str, Any]]:
        """The lines whose live allocations grew most between the first and last snapshot."""
        assert self.taken >= 2, "two snapshots are compared"
        first = tracemalloc.Snapshot.load(str(self.directory / "heap-1.snapshot"))
        last = tracemalloc.Snapshot.load(str(self.directory / f"heap-{self.taken}.snapshot"))
        total = sum(stat.size for stat in last.statistics("filename"))
        before = sum(stat.size for stat in first.statistics("filename"))
        print(f"\n- heap: {before / 2**20:.1f} MiB -> {total / 2**20:.1f} MiB (Python objects)")
        grown = []
        for stat in last.compare_to(first, "lineno")[:HEAP_TOP_LINES]:
            frame = stat.traceback[0]
            grown.append(
                {
                    "where": f"{frame.filename}:{frame.lineno}",
                    "grew_kib": stat.size_diff / 1024,
                    "live_kib": stat.size / 1024,
                    "blocks_grew": stat.count_diff,
                }
            )
            print(
                f"  {stat.size_diff / 1024:+10.1f} KiB  {stat.count_diff:+8d} blocks  "
                f"{frame.filename}:{frame.lineno}"
            )
        gc.collect()
        return grown


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Row], dict[str, Any]]:
    processes: list[Process] = []
    try:
        with step("starting the fake OpenAI server"):
            fake, llm_url = start_fake_llm(workdir, nodelay=True)
            processes.append(fake)
        env = dict(os.environ, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="sk-bench-fake")
        env["KELPIE_SANDBOX_POOL_SIZE"] = "0"
        heap = HeapProfile(workdir / "heap") if args.heap_profile else None
        launcher: tuple[str, ...] = ("-m", "kelpie")
        if heap is not None:
            env["KELPIE_BENCH_HEAP_DIR"] = str(heap.directory)
            launcher = (str(HEAP_LAUNCHER),)
        with step("starting kelpie serve"):
            server = start_server(
                workdir / "data", env, workdir / "server.log", 60.0, launcher=launcher
            )
            processes.append(server.process)
        pid = server.process.pid
        agent_ids: list[str] = []
        with step(f"creating {args.clients} agents"), LeanClient(server.base_url) as client:
            for i in range(args.clients):
                body = {
                    "name": f"soak-{i}",
                    "model": MODEL,
                    "context_window_limit": args.context_window,
                    "memory_blocks": [
                        {"label": "human", "value": f"The human is soak user {i}."},
                        {"label": "persona", "value": "I answer briefly."},
                    ],
                }
                created = lean_json(*client.request("POST", "/v1/agents/", body), "create agent")
                agent_ids.append(created["id"])
        print(f"- {args.clients} clients for {args.minutes:g} min (server pid {pid})", flush=True)
        started = time.perf_counter()
        deadline = started + args.minutes * 60
        recorder = Recorder(started)
        threads = [
            threading.Thread(
                target=client_loop,
                args=(server.base_url, agent_id, deadline, recorder),
                daemon=True,
            )
            for agent_id in agent_ids
        ]
        for thread in threads:
            thread.start()
        samples: list[dict[str, Any]] = []
        # The event loop runs on the main thread: its CPU is the request path's, apart from
        # the embedding worker's model (a thread pool) that embeds each message once.
        cpu_before, turns_before = cpu_seconds(pid), 0
        loop_before = cpu_seconds(pid, thread=pid)
        minute_index = 0
        while time.perf_counter() < deadline:
            next_mark = started + (minute_index + 1) * 60
            time.sleep(max(0.0, min(next_mark, deadline) - time.perf_counter()))
            if server.process.exited() is not None:
                raise BenchError(f"server exited:\n{server.process.log_tail()}")
            cpu_now, turns_now = cpu_seconds(pid), recorder.turns_total
            loop_now = cpu_seconds(pid, thread=pid)
            minute = recorder.minutes.get(minute_index, Minute(minute_index))
            ordered = sorted(minute.latencies)
            turns = turns_now - turns_before
            sample = {
                "minute": minute_index + 1,
                "turns": len(ordered),
                "turns_per_s": len(ordered) / 60.0,
                "p50_ms": percentile(ordered, 50) * 1000 if ordered else 0.0,
                "p99_ms": percentile(ordered, 99) * 1000 if ordered else 0.0,
                "errors": minute.errors,
                "rss_mib": process_tree_rss_mib(pid),
                "cpu_ms_per_turn": (cpu_now - cpu_before) * 1000 / turns if turns else 0.0,
                "loop_cpu_ms_per_turn": (loop_now - loop_before) * 1000 / turns if turns else 0.0,
                "context_messages": in_context_messages(server.base_url, agent_ids[0]),
            }
            samples.append(sample)
            print(
                "  minute {minute:>3}: {turns_per_s:7.1f} turns/s  p50 {p50_ms:7.2f} ms"
                "  p99 {p99_ms:7.2f} ms  RSS {rss_mib:6.1f} MiB  CPU/turn {cpu_ms_per_turn:6.2f}"
                " ms (loop {loop_cpu_ms_per_turn:5.2f})  agent 0 {context_messages} msgs"
                "  errors {errors}".format(**sample),
                flush=True,
            )
            minute_index += 1
            if heap is not None and minute_index == min(RSS_SETTLED_MINUTE, int(args.minutes) - 1):
                heap.take(pid)
            cpu_before, turns_before = cpu_seconds(pid), recorder.turns_total
            loop_before = cpu_seconds(pid, thread=pid)
        for thread in threads:
            thread.join(timeout=130)
        if heap is not None:
            heap.take(pid)
        with http_client(server.base_url) as check:
            agent = check.get(f"/v1/agents/{agent_ids[0]}").json()
            in_context = len(agent.get("message_ids") or [])
    finally:
        for process in reversed(processes):
            process.stop()
    if not samples:
        raise BenchError("the run ended before its first minute")
    first, last = samples[0], samples[-1]
    settled = samples[min(RSS_SETTLED_MINUTE, len(samples)) - 1]
    rows = [
        Row("turns/s, first minute", first["turns_per_s"], "/s"),
        Row("turns/s, last minute", last["turns_per_s"], "/s"),
        Row("p50, last minute", last["p50_ms"], "ms"),
        Row("p99, last minute", last["p99_ms"], "ms"),
        Row("server CPU per turn, first minute", first["cpu_ms_per_turn"], "ms"),
        Row("server CPU per turn, last minute", last["cpu_ms_per_turn"], "ms"),
        Row("server RSS, first minute", first["rss_mib"], "MiB"),
        Row("server RSS, last minute", last["rss_mib"], "MiB"),
        Row(
            "server CPU per turn, last / first minute",
            last["cpu_ms_per_turn"] / first["cpu_ms_per_turn"] if first["cpu_ms_per_turn"] else 0,
            "x",
        ),
        Row("event-loop CPU per turn, first minute", first["loop_cpu_ms_per_turn"], "ms"),
        Row("event-loop CPU per turn, last minute", last["loop_cpu_ms_per_turn"], "ms"),
        Row(
            f"server RSS growth after minute {RSS_SETTLED_MINUTE}",
            100 * (last["rss_mib"] - settled["rss_mib"]) / settled["rss_mib"],
            "%",
        ),
        Row("in-context messages of agent 0 at the end", float(in_context), "msgs"),
    ]
    details: dict[str, Any] = {"minutes": samples, "in_context_messages_agent_0": in_context}
    if heap is not None:
        details["heap_growth"] = heap.growth()
    return rows, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=MINUTES_DEFAULT, help="run time")
    parser.add_argument("--clients", type=int, default=CLIENTS_DEFAULT, help="clients = agents")
    parser.add_argument(
        "--context-window",
        type=int,
        default=CONTEXT_WINDOW_DEFAULT,
        help="the agents' context window in tokens (small: they compact as they go)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir and logs")
    parser.add_argument(
        "--heap-profile",
        action="store_true",
        help="run the server under tracemalloc and report what grew after minute 5",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-soak-"))
    try:
        rows, details = run(args, workdir)
    except BenchError as error:
        print(f"\nbenchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep_data:
            print(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows)
    if args.json is not None:
        config = {"minutes": args.minutes, "clients": args.clients}
        write_results(args.json, config, rows, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark code mode: `run_code` and `run_code_with_tools` on the process sandbox.

What it measures, in order (see bench/README.md for the why and the targets):

1. In process, against `ProcessSandbox` directly (no server, no HTTP), on the event loop
   the server uses (uvloop):
   a. one execution of a snippet that calls a tool N times (default 2000); the tool is a
      host callback that returns its argument. The snippet times each call itself with
      time.perf_counter (a framed JSON request over the worker's channel, the host's
      answer, back in the snippet) and returns the list: per-call p50/p99/mean. One
      execution of the same snippet runs first, unmeasured.
   b. executions of a small snippet with no tools (run_code's shape) on warm pool
      workers, each started with the pool full, timed around `await sandbox.run(job)`;
   c. the same snippet with a workspace (an agent id): such a job takes a cold worker of
      its own, the workspace bind-mounted when it starts.
2. Over HTTP against a real `python -m kelpie serve` and the tests' fake OpenAI server,
   on agents that have `run_code_with_tools` and `core_memory_append` (a `human` block):
   A  the model calls run_code_with_tools once with a loop of 100
      `core_memory_append(label='human', content='x')` calls, then replies;
   A0 the same turn whose loop calls no tool (what A costs without its 100 calls);
   B  the model makes 100 steps, each one `core_memory_append` call, then replies.
   Wall time of each turn (POST /v1/agents/{id}/messages), each on a fresh agent, the
   three kinds in rotating order; medians over the repetitions, and B / A. The fake model
   answers in ~1 ms, so B's figure is the server's own cost per step; with a real model
   each of B's 101 model calls adds a round trip of hundreds of ms (A makes 2).

    .venv/bin/python bench/bench_code.py            # default run, ~30 s
    .venv/bin/python bench/bench_code.py --quick    # smoke run, ~15 s
    .venv/bin/python bench/bench_code.py --json results.json

Latencies use time.perf_counter; percentiles are nearest-rank (rank ceil(p/100 * n)).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from _common import (
    MODEL,
    BenchError,
    Latencies,
    LeanClient,
    Process,
    Row,
    Server,
    lean_json,
    print_table,
    raise_on_sigterm,
    start_fake_llm,
    start_server,
    step,
    write_results,
)
from kelpie.sandbox import (
    SANDBOX_POOL_SIZE_DEFAULT,
    HostCallAnswer,
    ProcessSandbox,
    ToolJob,
    ToolJobResult,
    ToolStub,
)

T = TypeVar("T")

ECHO_TOOL = "bench_echo"
ECHO_STUBS = (ToolStub(name=ECHO_TOOL, parameters=("value",)),)
# The snippet of the tool-call benchmark: {calls} calls, each timed inside the sandbox.
CALLS_SOURCE = """\
import time
clock = time.perf_counter
took = []
for i in range({calls}):
    started = clock()
    answer = {tool}(i)
    took.append(clock() - started)
    if answer != i:
        raise AssertionError(f'call {{i}} answered {{answer!r}}')
took
"""
# run_code's shape: a little work, a print, a result.
PLAIN_SOURCE = "total = sum(range(1000))\nprint('total', total)\ntotal"
PLAIN_RESULT = 499500
WORKSPACE_AGENT = "agent-00000000-0000-4000-8000-00000000bec0"

RUN_CODE_WITH_TOOLS = "run_code_with_tools"
MEMORY_TOOL = "core_memory_append"
LOOP_CALLS = 100  # the memory-tool calls of turns A and B
BLOCK_LIMIT = 100_000  # the human block's character limit: 100 appends per turn fit
# Turn A's code; it times each call itself, as the in-process snippet does, and returns the
# list: what one call from code costs in the server (the registry, the session, the edit).
CODE_WITH_CALLS = (
    "import time\n"
    "took = []\n"
    f"for i in range({LOOP_CALLS}):\n"
    "    started = time.perf_counter()\n"
    f"    {MEMORY_TOOL}(label='human', content='x')\n"
    "    took.append(time.perf_counter() - started)\n"
    "took"
)
CODE_WITHOUT_CALLS = (
    f"count = 0\nfor i in range({LOOP_CALLS}):\n    count += 1\ncount"  # A0: the loop, no calls
)
REPLY = "Done."
TURN_KINDS = ("A", "A0", "B")

POOL_FULL_TIMEOUT_S = 60.0
POOL_POLL_S = 0.001
RUN_GAP_S = 0.02  # after the pool is full, before a run: the last worker's retirement done

# Targets (see bench/README.md).
TARGET_CALL_P50_MS = 0.5


# --------------------------------------------------------------------------- in-process


async def echo(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
    """The host's answer to a call from code: the argument back."""
    if name != ECHO_TOOL:
        return HostCallAnswer(False, f"Tool '{name}' is not available")
    return HostCallAnswer(True, arguments.get("value"))


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


def check_success(result: ToolJobResult, what: str) -> None:
    if result.status != "success":
        raise BenchError(f"{what}: {result.error}\n{result.traceback or result.stderr}")


@dataclass
class CallResults:
    per_call: Latencies  # as timed inside the snippet
    execution_s: float  # the whole execution, around `await sandbox.run(job)`


async def tool_calls(sandbox: ProcessSandbox, calls: int) -> CallResults:
    """One execution making `calls` tool calls (after one unmeasured execution)."""
    job = ToolJob(
        source_code=CALLS_SOURCE.format(calls=calls, tool=ECHO_TOOL),
        function_name=None,
        tools=ECHO_STUBS,
    )
    for measured in (False, True):
        await wait_warm(sandbox, SANDBOX_POOL_SIZE_DEFAULT)
        await asyncio.sleep(RUN_GAP_S)
        started = time.perf_counter()
        result = await sandbox.run(job, echo)
        execution_s = time.perf_counter() - started
        check_success(result, "the tool-call execution")
        took = result.func_return
        if not isinstance(took, list) or len(took) != calls:
            raise BenchError(f"the snippet returned no list of {calls} timings: {took!r:.200}")
        if measured:
            return CallResults(Latencies([float(t) for t in took]), execution_s)
    raise AssertionError("unreachable")


async def code_runs(sandbox: ProcessSandbox, runs: int, workspace: str | None) -> Latencies:
    """`runs` executions of PLAIN_SOURCE, each started with the pool full and quiet. With a
    workspace, each takes a cold worker; without, a warm one from the pool. One
    unmeasured run first."""
    job = ToolJob(source_code=PLAIN_SOURCE, function_name=None, workspace=workspace)
    latencies = Latencies()
    for i in range(1 + runs):
        await wait_warm(sandbox, SANDBOX_POOL_SIZE_DEFAULT)
        await asyncio.sleep(RUN_GAP_S)
        started = time.perf_counter()
        result = await sandbox.run(job)
        elapsed = time.perf_counter() - started
        check_success(result, "a code run")
        if result.func_return != PLAIN_RESULT or result.stdout != f"total {PLAIN_RESULT}\n":
            raise BenchError(f"a code run returned {result.func_return!r}, {result.stdout!r}")
        if i:
            latencies.samples.append(elapsed)
    return latencies


@dataclass
class InProcessResults:
    description: str
    calls: CallResults
    warm: Latencies
    cold: Latencies


async def in_process(
    root_dir: Path, calls: int, warm_runs: int, cold_runs: int
) -> InProcessResults:
    async with open_sandbox(root_dir, SANDBOX_POOL_SIZE_DEFAULT) as sandbox:
        per_call = await tool_calls(sandbox, calls)
        warm = await code_runs(sandbox, warm_runs, None)
        cold = await code_runs(sandbox, cold_runs, WORKSPACE_AGENT)
        return InProcessResults(str(sandbox.description), per_call, warm, cold)


# --------------------------------------------------------------------------- over HTTP


def tool_call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"id": call_id, "name": name, "arguments": json.dumps(arguments)}


def calling(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"tool_calls": list(calls)}


def script_of(kind: str, rep: int) -> list[dict[str, Any]]:
    """The fake model's answers for one turn of `kind` (see the module's docstring)."""
    if kind == "B":
        entries = [
            calling(tool_call(MEMORY_TOOL, {"label": "human", "content": "x"}, f"b-{rep}-{i}"))
            for i in range(LOOP_CALLS)
        ]
    else:
        code = CODE_WITH_CALLS if kind == "A" else CODE_WITHOUT_CALLS
        entries = [calling(tool_call(RUN_CODE_WITH_TOOLS, {"code": code}, f"{kind}-{rep}"))]
    return [*entries, {"content": REPLY}]


def items_of(response: dict[str, Any], message_type: str) -> list[dict[str, Any]]:
    return [m for m in response.get("messages", []) if m.get("message_type") == message_type]


def create_agent(client: LeanClient, name: str) -> str:
    body = {
        "name": name,
        "model": MODEL,
        "include_base_tools": False,
        "tools": [RUN_CODE_WITH_TOOLS, MEMORY_TOOL],
        "memory_blocks": [
            {"label": "human", "value": "The human.", "limit": BLOCK_LIMIT},
            {"label": "persona", "value": "I am a helpful assistant used for benchmarking."},
        ],
        "tags": ["bench"],
    }
    agent = lean_json(*client.request("POST", "/v1/agents/", body), "create agent")
    names = {t.get("name") for t in agent.get("tools", [])}
    if not {RUN_CODE_WITH_TOOLS, MEMORY_TOOL} <= names:
        raise BenchError(f"agent {agent['id']} lacks a tool: it has {sorted(names)}")
    agent_id: str = agent["id"]
    return agent_id


def human_appends(client: LeanClient, agent_id: str) -> int:
    block = lean_json(
        *client.request("GET", f"/v1/agents/{agent_id}/core-memory/blocks/human"), "GET block"
    )
    value: str = block["value"]
    return value.count("\nx")


def turn(client: LeanClient, fake: LeanClient, kind: str, rep: int) -> tuple[float, list[float]]:
    """One turn of `kind` on a fresh agent; checks what it did. Returns its wall time and,
    for turn A, each tool call's time as its code measured it."""
    agent_id = create_agent(client, f"bench-code-{kind}-{rep}")
    lean_json(*fake.request("DELETE", "/_script"), "DELETE /_script")
    lean_json(*fake.request("POST", "/_script", script_of(kind, rep)), "POST /_script")
    body = {
        "messages": [{"role": "user", "content": f"turn {kind} {rep}"}],
        "max_steps": LOOP_CALLS + 10,
    }
    path = f"/v1/agents/{agent_id}/messages"
    started = time.perf_counter()
    status, raw = client.request("POST", path, body)
    elapsed = time.perf_counter() - started
    response: dict[str, Any] = lean_json(status, raw, f"POST {path}")

    replies = [m.get("content") for m in items_of(response, "assistant_message")]
    returns = items_of(response, "tool_return_message")
    failed = [r for r in returns if r.get("status") != "success"]
    expected_returns = LOOP_CALLS if kind == "B" else 1
    if replies != [REPLY] or len(returns) != expected_returns or failed:
        raise BenchError(
            f"turn {kind} {rep}: expected {expected_returns} successful tool returns and"
            f" {REPLY!r}: {json.dumps(response)[:2000]}"
        )
    took: list[float] = []
    if kind != "B":
        returned = json.loads(returns[0]["tool_return"]).get("func_return")
        if kind == "A" and isinstance(returned, list) and len(returned) == LOOP_CALLS:
            took = [float(t) for t in returned]
        elif returned != LOOP_CALLS:
            raise BenchError(f"turn {kind} {rep}: the code returned {returned!r:.500}")
    appended = human_appends(client, agent_id)
    if appended != (0 if kind == "A0" else LOOP_CALLS):
        raise BenchError(f"turn {kind} {rep}: the human block got {appended} appends")
    return elapsed, took


@dataclass
class HttpResults:
    turns: dict[str, Latencies] = field(
        default_factory=lambda: {k: Latencies() for k in TURN_KINDS}
    )
    calls_in_a: Latencies = field(default_factory=Latencies)  # as turn A's code timed them


def http_turns(server: Server, llm_url: str, reps: int) -> HttpResults:
    """`reps` rounds of one turn of each kind, each on a fresh agent, the order rotating
    from round to round. One unmeasured round first (the first turn imports the model
    SDK)."""
    results = HttpResults()
    with LeanClient(server.base_url) as client, LeanClient(llm_url.removesuffix("/v1")) as fake:
        for rep in range(-1, reps):
            shift = rep % len(TURN_KINDS)
            for kind in TURN_KINDS[shift:] + TURN_KINDS[:shift]:
                elapsed, took = turn(client, fake, kind, rep)
                if rep >= 0:
                    results.turns[kind].samples.append(elapsed)
                    results.calls_in_a.samples.extend(took)
    return results


# --------------------------------------------------------------------------- main


@dataclass
class Config:
    calls: int
    warm: int
    cold: int
    reps: int
    stock_loop: bool
    startup_timeout_s: float
    json_path: Path | None
    keep_data: bool
    quick: bool


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        description="Benchmark code mode: tool calls from code, code runs, code turns.",
        epilog="Percentiles are nearest-rank: value at rank ceil(p/100 * n) of the sorted samples.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run with small counts")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--calls", type=int, help="tool calls in the measured execution (2000; 500 --quick)"
    )
    parser.add_argument("--warm", type=int, help="code runs on warm workers (200; 50 --quick)")
    parser.add_argument(
        "--cold", type=int, help="code runs with a workspace, cold workers (50; 15 --quick)"
    )
    parser.add_argument(
        "--reps", type=int, help="rounds of turns A, A0 and B over HTTP (10; 3 --quick)"
    )
    parser.add_argument(
        "--stock-loop",
        action="store_true",
        help="run the in-process part on asyncio's own loop instead of uvloop (the server's)",
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
        calls=pick(args.calls, 2000, 500),
        warm=pick(args.warm, 200, 50),
        cold=pick(args.cold, 50, 15),
        reps=pick(args.reps, 10, 3),
        stock_loop=args.stock_loop,
        startup_timeout_s=args.startup_timeout,
        json_path=args.json,
        keep_data=args.keep_data,
        quick=quick,
    )
    for name in ("calls", "warm", "cold", "reps"):
        if getattr(config, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return config


@dataclass
class Results:
    local: InProcessResults
    http: HttpResults


def run_loop(config: Config, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs the in-process part on the server's event loop (uvloop) unless --stock-loop."""
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
            f"in process: {config.calls} tool calls in one execution, {config.warm} warm"
            f" and {config.cold} workspace (cold) code runs"
        ):
            local = run_loop(
                config,
                lambda: in_process(workdir / "sandbox", config.calls, config.warm, config.cold),
            )

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
            with step(f"{config.reps} rounds of turns A, A0 and B over HTTP, fresh agents"):
                http = http_turns(server, llm_url, config.reps)
            if server.process.exited() is not None:
                raise BenchError(f"the server exited with {server.process.exited()}")
        except (OSError, BenchError) as exc:
            raise with_log(exc, server) from exc
    finally:
        for proc in reversed(processes):
            proc.stop()
    return Results(local=local, http=http)


def ms(latencies: Latencies) -> dict[str, float]:
    return latencies.summary_ms()


def median_ms(latencies: Latencies) -> float:
    return statistics.median(latencies.samples) * 1000


def rows_of(r: Results, config: Config) -> list[Row]:
    call, warm, cold = ms(r.local.calls.per_call), ms(r.local.warm), ms(r.local.cold)
    in_server = ms(r.http.calls_in_a)
    execution_ms = r.local.calls.execution_s * 1000
    turn = {kind: median_ms(r.http.turns[kind]) for kind in TURN_KINDS}
    n = LOOP_CALLS
    rows = [
        Row("Tool call from code (trivial host callback), p50", call["p50_ms"], "ms",
            f"< {TARGET_CALL_P50_MS:g} ms", call["p50_ms"] < TARGET_CALL_P50_MS),
        Row("Tool call from code, p99", call["p99_ms"], "ms"),
        Row("Tool call from code, mean", call["mean_ms"], "ms"),
        Row("Tool call from code, max", call["max_ms"], "ms"),
        Row(f"  the execution of {config.calls} calls, whole", execution_ms, "ms"),
        Row("Code run, no tools, warm worker, p50", warm["p50_ms"], "ms"),
        Row("Code run, no tools, warm worker, p99", warm["p99_ms"], "ms"),
        Row("Code run with a workspace (cold worker), p50", cold["p50_ms"], "ms"),
        Row("Code run with a workspace (cold worker), p99", cold["p99_ms"], "ms"),
        Row(f"HTTP turn A: 1 code call, {n} {MEMORY_TOOL} inside, median", turn["A"], "ms"),
        Row("HTTP turn A0: 1 code call, no tool calls inside, median", turn["A0"], "ms"),
        Row(f"  one {MEMORY_TOOL} call, timed by A's code, p50", in_server["p50_ms"], "ms"),
        Row(f"  one {MEMORY_TOOL} call, timed by A's code, p99", in_server["p99_ms"], "ms"),
        Row(f"  the {n} calls in A's code, mean total per turn",
            in_server["mean_ms"] * n, "ms"),
        Row(f"HTTP turn B: {n} steps of one {MEMORY_TOOL} each, median", turn["B"], "ms"),
        Row("  per step, B / 101 model calls", turn["B"] / (n + 1), "ms"),
        Row("B / A (fake model: ~1 ms per model call)", turn["B"] / turn["A"], "x"),
    ]  # fmt: skip
    return rows


def details_of(r: Results) -> dict[str, Any]:
    return {
        "sandbox": r.local.description,
        "tool_call_from_code": ms(r.local.calls.per_call),
        "tool_call_execution_ms": r.local.calls.execution_s * 1000,
        "code_run_warm": ms(r.local.warm),
        "code_run_workspace_cold": ms(r.local.cold),
        "http_call_from_code_in_turn_a": ms(r.http.calls_in_a),
        "http_turns": {
            kind: {
                "median_ms": median_ms(r.http.turns[kind]),
                "samples_ms": [s * 1000 for s in r.http.turns[kind].samples],
            }
            for kind in TURN_KINDS
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    print(
        f"Kelpie code-mode benchmark: {config.calls} tool calls from code, {config.warm} warm"
        f" and {config.cold} cold code runs ({'asyncio' if config.stock_loop else 'uvloop'}"
        f" in process), {config.reps} rounds of code turns over HTTP"
    )
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-code-"))
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

    rows = rows_of(results, config)
    print_table(rows)
    print(f"Sandbox: {results.local.description}")
    print(
        "The fake model answers in ~1 ms: turn B's time is the server's own cost of 101"
        " steps. With a real model each model call adds a round trip of hundreds of ms,"
        f" which B pays {LOOP_CALLS + 1} times and A twice."
    )
    misses = [r.name.strip() for r in rows if r.passed is False]
    print("All targets met." if not misses else f"Missed: {', '.join(misses)}")

    if config.json_path is not None:
        settings = {
            "calls": config.calls,
            "warm": config.warm,
            "cold": config.cold,
            "reps": config.reps,
            "loop_calls_per_turn": LOOP_CALLS,
            "pool_size": SANDBOX_POOL_SIZE_DEFAULT,
            "loop": "asyncio" if config.stock_loop else "uvloop",
            "quick": config.quick,
        }
        write_results(config.json_path, settings, rows, details_of(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

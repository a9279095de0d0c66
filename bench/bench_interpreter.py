"""Benchmark the interpreter tier (Monty) against the process tier on a tool-only snippet.

In process, no server: one `ProcessSandbox` (pool of 4, bubblewrap) and one
`InterpreterSandbox` on top of it (pool of 2), on uvloop (the server's loop) unless
--stock-loop. The snippet makes 3 tool calls and sums their answers; the tool is a host
callback that adds its two arguments. Each run starts with both pools full and quiet (as
bench_code.py's warm runs), timed around `await sandbox.run(job, calls)`; the two tiers
alternate, one unmeasured run of each first. Prints p50 / p99 / max of each and the ratio
of the medians.

    .venv/bin/python bench/bench_interpreter.py [--runs 200] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import BenchError, Latencies, Row, print_table, write_results
from kelpie.sandbox import (
    INTERPRETER_POOL_SIZE_DEFAULT,
    SANDBOX_POOL_SIZE_DEFAULT,
    HostCallAnswer,
    InterpreterSandbox,
    ProcessSandbox,
    ToolJob,
    ToolJobResult,
    ToolStub,
)

SNIPPET = "a = add(1, 2)\nb = add(a, 3)\nc = add(b, b)\nprint('sum', a + b + c)\na + b + c"
RESULT = 3 + 6 + 12
TOOLS = (ToolStub(name="add", parameters=("a", "b")),)
POOL_FULL_TIMEOUT_S = 30.0
POOL_POLL_S = 0.005
RUN_GAP_S = 0.02  # after the pools are full: the last worker's retirement done


async def add(name: str, arguments: dict[str, Any]) -> HostCallAnswer:
    if name != "add":
        return HostCallAnswer(False, f"Tool '{name}' is not available")
    return HostCallAnswer(True, arguments["a"] + arguments["b"])


def check(result: ToolJobResult, tier: str) -> None:
    if result.status != "success" or result.func_return != RESULT:
        raise BenchError(f"{tier}: {result.error or result.func_return!r}\n{result.stderr}")
    if result.stdout != f"sum {RESULT}\n":
        raise BenchError(f"{tier} printed {result.stdout!r}")


async def wait_full(process: ProcessSandbox, interpreter: InterpreterSandbox) -> None:
    deadline = time.perf_counter() + POOL_FULL_TIMEOUT_S
    while (
        process.warm_workers < SANDBOX_POOL_SIZE_DEFAULT
        or interpreter.warm_workers < INTERPRETER_POOL_SIZE_DEFAULT
    ):
        if time.perf_counter() > deadline:
            raise BenchError(
                f"pools not full after {POOL_FULL_TIMEOUT_S:g} s: process"
                f" {process.warm_workers}, interpreter {interpreter.warm_workers}"
            )
        await asyncio.sleep(POOL_POLL_S)
    await asyncio.sleep(RUN_GAP_S)


async def measure(root_dir: Path, runs: int) -> tuple[Latencies, Latencies]:
    process = ProcessSandbox(
        root_dir=root_dir / "sandbox", pool_size=SANDBOX_POOL_SIZE_DEFAULT, code_sessions=False
    )
    interpreter = InterpreterSandbox(process, state_dir=root_dir / "interpreter")
    await process.start()
    await interpreter.start()
    try:
        await process.ready()
        reason = interpreter.unavailable_reason
        if reason is not None:
            raise BenchError(f"the sandbox is unavailable: {reason}")
        job = ToolJob(source_code=SNIPPET, function_name=None, tools=TOOLS)
        tiers: dict[str, tuple[ProcessSandbox | InterpreterSandbox, Latencies]] = {
            "interpreter": (interpreter, Latencies()),
            "process": (process, Latencies()),
        }
        for i in range(1 + runs):
            order = list(tiers.items()) if i % 2 else list(reversed(tiers.items()))
            for tier, (sandbox, latencies) in order:
                await wait_full(process, interpreter)
                started = time.perf_counter()
                result = await sandbox.run(job, add)
                elapsed = time.perf_counter() - started
                check(result, tier)
                if i:
                    latencies.samples.append(elapsed)
        return tiers["interpreter"][1], tiers["process"][1]
    finally:
        await interpreter.close()
        await process.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="measured runs per tier (200; 30 --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--stock-loop", action="store_true", help="asyncio's loop, not uvloop")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    runs: int = args.runs if args.runs is not None else (30 if args.quick else 200)
    if runs < 1:
        parser.error("--runs must be at least 1")
    print(f"Interpreter tier vs process tier: {runs} warm runs each of a 3-tool-call snippet")
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-interpreter-"))
    try:
        if args.stock_loop:
            interp, proc = asyncio.run(measure(workdir, runs))
        else:
            import uvloop

            interp, proc = uvloop.run(measure(workdir, runs))
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    i, p = interp.summary_ms(), proc.summary_ms()
    ratio = statistics.median(proc.samples) / statistics.median(interp.samples)
    rows = [
        Row("Interpreter tier, 3 tool calls + sum, p50", i["p50_ms"], "ms"),
        Row("Interpreter tier, p99", i["p99_ms"], "ms"),
        Row("Interpreter tier, max", i["max_ms"], "ms"),
        Row("Process tier (warm worker), same snippet, p50", p["p50_ms"], "ms"),
        Row("Process tier, p99", p["p99_ms"], "ms"),
        Row("Process tier, max", p["max_ms"], "ms"),
        Row("Process p50 / interpreter p50", ratio, "x"),
    ]
    print_table(rows)
    if args.json is not None:
        settings = {"runs": runs, "loop": "asyncio" if args.stock_loop else "uvloop"}
        details = {"interpreter": i, "process": p}
        write_results(args.json, settings, rows, details)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())

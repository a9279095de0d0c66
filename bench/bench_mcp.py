"""Benchmark MCP tool calls: Kelpie's kept connection against a fresh connection per call
(what Letta 0.16 did: connect, initialize, call, close), in process, on uvloop, against a
real MCP server from PyPI (`mcp-server-time`, stdio).

    .venv/bin/python bench/bench_mcp.py            # 200 kept, 30 fresh calls
    .venv/bin/python bench/bench_mcp.py --quick    # 50 kept, 10 fresh

Latencies use time.perf_counter; percentiles are nearest-rank. Not measured here yet: a
turn with one MCP call against a plain turn over HTTP (see NOTES.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import uvloop

from _common import percentile
from kelpie.mcp import McpConnections, McpServerSpec

TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")
SPEC = McpServerSpec(
    key="bench-time",
    name="time",
    transport="stdio",
    command=TIME_SERVER,
    args=("--local-timezone", "UTC"),
)
ARGUMENTS = {"timezone": "UTC"}


async def kept(calls: int) -> list[float]:
    clients = McpConnections()
    try:
        await clients.call_tool(SPEC, "get_current_time", ARGUMENTS)  # connects, unmeasured
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await clients.call_tool(SPEC, "get_current_time", ARGUMENTS)
            times.append(time.perf_counter() - started)
            assert not result.is_error, result
        return times
    finally:
        await clients.close()


async def fresh(calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        clients = McpConnections()
        try:
            result = await clients.call_tool(SPEC, "get_current_time", ARGUMENTS)
        finally:
            await clients.close()
        times.append(time.perf_counter() - started)
        assert not result.is_error, result
    return times


def report(name: str, times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p50, p99 = percentile(ordered, 50) * 1e3, percentile(ordered, 99) * 1e3
    print(f"{name:<44} p50 {p50:8.2f} ms   p99 {p99:8.2f} ms   (n={len(times)})")
    return p50, p99


async def main(kept_calls: int, fresh_calls: int) -> None:
    kept_p50, _ = report("kept connection (Kelpie)", await kept(kept_calls))
    fresh_p50, _ = report("fresh connection per call (Letta 0.16)", await fresh(fresh_calls))
    print(f"fresh / kept, p50: {fresh_p50 / kept_p50:.0f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts")
    args = parser.parse_args()
    uvloop.run(main(50 if args.quick else 200, 10 if args.quick else 30))

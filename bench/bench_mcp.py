"""Benchmark MCP tool calls against a real MCP server from PyPI (`mcp-server-time`, stdio):

1. In process, on uvloop: Kelpie's kept connection against a fresh connection per call
   (what Letta 0.16 did: connect, initialize, call, close).
2. Over HTTP against a real `python -m kelpie serve` and the tests' fake OpenAI server: a
   turn whose model calls the MCP tool `get_current_time` and then answers, against the same
   turn calling the built-in `working_memory_get` (one store read in the server), alternated
   on the same agents. The difference is what an MCP call adds to a turn.

    .venv/bin/python bench/bench_mcp.py            # 200 kept, 30 fresh calls, 200 turn pairs
    .venv/bin/python bench/bench_mcp.py --quick    # 50 kept, 10 fresh, 50 pairs

Latencies use time.perf_counter; percentiles are nearest-rank.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from _common import (
    BenchError,
    LeanClient,
    Process,
    agent_body,
    lean_json,
    percentile,
    start_fake_llm,
    start_server,
)
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
MCP_TOOL = "get_current_time"
BUILTIN_TOOL = "working_memory_get"
REPLY = "Done."


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


async def in_process(kept_calls: int, fresh_calls: int) -> None:
    kept_p50, _ = report("kept connection (Kelpie)", await kept(kept_calls))
    fresh_p50, _ = report("fresh connection per call (Letta 0.16)", await fresh(fresh_calls))
    print(f"fresh / kept, p50: {fresh_p50 / kept_p50:.0f}x")


def turn(client: LeanClient, fake: LeanClient, agent_id: str, tool: str, i: int) -> float:
    """A turn whose model calls `tool` then replies; checks both happened."""
    arguments = {"timezone": "UTC"} if tool == MCP_TOOL else {"key": f"missing-{i}"}
    call = {"id": f"call-{i}", "name": tool, "arguments": json.dumps(arguments)}
    lean_json(*fake.request("DELETE", "/_script"), "DELETE /_script")
    script = [{"tool_calls": [call]}, {"content": REPLY}]
    lean_json(*fake.request("POST", "/_script", script), "POST /_script")
    body = {"messages": [{"role": "user", "content": f"call {tool} {i}"}]}
    started = time.perf_counter()
    status, raw = client.request("POST", f"/v1/agents/{agent_id}/messages", body)
    elapsed = time.perf_counter() - started
    response = lean_json(status, raw, "send message")
    kinds = [(m.get("message_type"), m.get("status")) for m in response["messages"]]
    if tool == MCP_TOOL and ("tool_return_message", "success") not in kinds:
        raise BenchError(f"MCP turn {i}: no successful tool return: {response}")
    return elapsed


def over_http(workdir: Path, agents: int, pairs: int) -> None:
    processes: list[Process] = []
    try:
        fake_process, llm_url = start_fake_llm(workdir, nodelay=True)
        processes.append(fake_process)
        env = dict(os.environ, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="sk-bench-fake")
        (workdir / "server").mkdir()
        server = start_server(workdir / "server", env, workdir / "server.log", 120)
        processes.append(server.process)
        with LeanClient(server.base_url) as client, LeanClient(llm_url[: -len("/v1")]) as fake:
            config = {"mcp_server_type": "stdio", "command": TIME_SERVER, "args": []}
            created = lean_json(
                *client.request(
                    "POST", "/v1/mcp-servers/", {"server_name": "time", "config": config}
                ),
                "register the MCP server",
            )
            tools = lean_json(
                *client.request("GET", f"/v1/mcp-servers/{created['id']}/tools"), "list tools"
            )
            mcp_tool = next(t for t in tools if t["name"] == MCP_TOOL)
            ids = []
            for i in range(agents):
                body = agent_body(i) | {"tool_ids": [mcp_tool["id"]], "tools": [BUILTIN_TOOL]}
                ids.append(lean_json(*client.request("POST", "/v1/agents/", body), "agent")["id"])
            for n, agent_id in enumerate(ids):  # warm-up, unmeasured
                for tool in (MCP_TOOL, BUILTIN_TOOL):
                    turn(client, fake, agent_id, tool, -1 - n)
            with_mcp, builtin = [], []
            for i in range(pairs):
                order = (MCP_TOOL, BUILTIN_TOOL) if i % 2 == 0 else (BUILTIN_TOOL, MCP_TOOL)
                took = {tool: turn(client, fake, ids[i % agents], tool, i) for tool in order}
                with_mcp.append(took[MCP_TOOL])
                builtin.append(took[BUILTIN_TOOL])
        mcp_p50, mcp_p99 = report("HTTP turn, MCP tool + reply", with_mcp)
        builtin_p50, builtin_p99 = report("HTTP turn, built-in tool + reply", builtin)
        added = mcp_p50 - builtin_p50, mcp_p99 - builtin_p99
        print(f"an MCP call adds, p50 {added[0]:.2f} ms, p99 {added[1]:.2f} ms")
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts")
    args = parser.parse_args()
    uvloop.run(in_process(50 if args.quick else 200, 10 if args.quick else 30))
    with tempfile.TemporaryDirectory(prefix="kelpie-bench-mcp-") as workdir:
        over_http(Path(workdir), agents=5, pairs=50 if args.quick else 200)

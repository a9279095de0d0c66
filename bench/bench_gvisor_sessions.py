"""Benchmark GvisorSessions (code sessions in gVisor), in process, on the real runsc.

What it measures:
1. the host check (a probe container started and ended);
2. session start: the first run of a trivial snippet for a new agent (container started,
   Python up, the job run), over a few fresh agents;
3. warm runs: a trivial snippet (`x + 1`) in a running session, p50 / p90 / max;
4. with ~100 MB of state in the session (`blob = bytearray(100 MiB)`, zero pages, and a
   100 MiB `os.urandom` blob, which does not compress): the checkpoint (pause: image
   written, container stopped), the image's size on disk, and the resume (the next run
   after the pause: restore, reattach, ping, then the snippet), each a few times.

    .venv/bin/python bench/bench_gvisor_sessions.py            # ~1 min
    .venv/bin/python bench/bench_gvisor_sessions.py --quick    # fewer rounds

Needs root and runsc (scripts/bootstrap installs it). Percentiles are nearest-rank.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from kelpie.sandbox import ToolJob, Workspaces
from kelpie.sandbox._gvisor import GvisorSessions

MIB = 1024 * 1024


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def line(name: str, values_s: list[float], extra: str = "") -> None:
    ms = [v * 1000 for v in values_s]
    print(
        f"{name:<44} n={len(ms):<3} p50 {percentile(ms, 50):8.1f} ms  "
        f"p90 {percentile(ms, 90):8.1f} ms  max {max(ms):8.1f} ms  {extra}"
    )


async def run_ok(sessions: GvisorSessions, agent: str, source: str) -> object:
    result = await sessions.run(agent, ToolJob(source_code=source, function_name=None))
    if result.status != "success":
        raise SystemExit(f"{agent}: {source!r} failed: {result}")
    return result.func_return


async def main(quick: bool) -> None:
    root = Path(tempfile.mkdtemp(prefix="kelpie-bench-gvisor-"))
    sessions = GvisorSessions(root_dir=root / "sessions", workspaces=Workspaces(root / "ws"))
    try:
        started = time.perf_counter()
        await sessions.start()
        await sessions.ready()
        if sessions.unavailable_reason is not None:
            raise SystemExit(f"gVisor sessions unavailable: {sessions.unavailable_reason}")
        line("host check (probe container)", [time.perf_counter() - started])

        starts = []
        for i in range(3 if quick else 6):
            agent = f"agent-start-{i}"
            began = time.perf_counter()
            await run_ok(sessions, agent, "x = 1\nx")
            starts.append(time.perf_counter() - began)
            await sessions.discard(agent)
        line("session start + first run", starts)

        agent = "agent-warm"
        await run_ok(sessions, agent, "x = 1")
        warm = []
        for _ in range(50 if quick else 300):
            began = time.perf_counter()
            await run_ok(sessions, agent, "x + 1")
            warm.append(time.perf_counter() - began)
        line("warm run (x + 1)", warm)
        await sessions.discard(agent)

        for label, fill in (
            ("100 MiB zeros", "blob = bytearray(100 * 1024 * 1024)"),
            ("100 MiB random", "import os\nblob = bytearray(os.urandom(100 * 1024 * 1024))"),
        ):
            agent = "agent-state"
            await run_ok(sessions, agent, f"{fill}\nmarker = 42")
            pauses, resumes, sizes = [], [], []
            for _ in range(3 if quick else 5):
                began = time.perf_counter()
                assert await sessions.pause(agent)
                pauses.append(time.perf_counter() - began)
                sizes.append(sessions.image_path(agent).stat().st_size)
                began = time.perf_counter()
                value = await run_ok(sessions, agent, "marker + len(blob)")
                resumes.append(time.perf_counter() - began)
                assert value == 42 + 100 * MIB, value
            line(f"checkpoint ({label})", pauses, f"image {max(sizes) / MIB:.1f} MiB")
            line(f"resume + run ({label})", resumes)
            await sessions.discard(agent)
    finally:
        await sessions.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    print(f"python {sys.version.split()[0]}")
    asyncio.run(main(arguments.quick))

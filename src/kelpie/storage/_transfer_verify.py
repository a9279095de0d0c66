"""`migrate-db`'s proof that the target holds what the source does: per table, the row
count and a sha256 over the rows in key order (`RowDigest`, the same canonical form on
both sides, fed in chunks), and for pgvector's `embedding` that every indexed vector has
one, equal on a sample to what the PostgreSQL store itself would have written."""

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Final, final

import psycopg

from kelpie.storage._pg_search import HNSW_DIM_MAX, halfvec_text
from kelpie.storage._transfer_rows import RowDigest, snapshot, source_rows
from kelpie.storage._transfer_schema import EMBEDDING_COLUMN, TablePlan
from kelpie.storage._transfer_target import Connection

# Rows fetched from the target's cursor at a time.
CHECKSUM_FETCH_ROWS: Final = 2_000
# Embeddings per table compared with the store's own text form (halfvec_text is slow).
EMBEDDING_SAMPLE_ROWS: Final = 100
_TEXT_OID: Final = psycopg.postgres.types["text"].oid


@final
@dataclasses.dataclass(frozen=True)
class TableCheck:
    table: str
    source_rows: int
    target_rows: int
    source_sha256: str
    target_sha256: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sha256 == self.target_sha256


@final
@dataclasses.dataclass(frozen=True)
class Outcome:
    """Every table's check, and what differs (one line each; none when verified)."""

    checks: tuple[TableCheck, ...]
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return not self.problems and all(check.ok for check in self.checks)


async def target_digest(db: Connection, plan: TablePlan) -> RowDigest:
    """The target's rows of the table hashed as the source's are: same columns, same
    order (text keys compared bytewise, as SQLite does, whatever the column's collation)."""
    order = ", ".join(
        f'"{column}" COLLATE "C"' if plan.type_oids[position] == _TEXT_OID else f'"{column}"'
        for column, position in zip(plan.key, plan.key_positions, strict=True)
    )
    columns = ", ".join(f'"{column}"' for column in plan.columns)
    digest = RowDigest()
    async with db.transaction(), db.cursor(name="kelpie_migrate_db_verify") as cursor:
        await cursor.execute(f'SELECT {columns} FROM "{plan.name}" ORDER BY {order}')
        while rows := await cursor.fetchmany(CHECKSUM_FETCH_ROWS):
            digest.update(rows)
    return digest


async def embedding_problems(db: Connection, plan: TablePlan) -> list[str]:
    """Indexed vectors without an embedding, and sampled embeddings that differ from the
    store's own (`halfvec_text` cast to halfvec, as `save_embeddings` writes them)."""
    if plan.embedding_oid is None:
        return []
    assert len(plan.key) == 1, "an index table is keyed by its seq"
    key, table = plan.key[0], plan.name
    cursor = await db.execute(
        f'SELECT count(*) FROM "{table}" WHERE vector IS NOT NULL AND dim <= %s'
        f" AND {EMBEDDING_COLUMN} IS NULL",
        (HNSW_DIM_MAX,),
    )
    row = await cursor.fetchone()
    missing = int(row[0]) if row else 0
    problems = [f"{table}: {missing} vectors without their halfvec embedding"] if missing else []
    cursor = await db.execute(
        f'SELECT "{key}", vector FROM "{table}" WHERE {EMBEDDING_COLUMN} IS NOT NULL'
        f' ORDER BY md5("{key}"::text) LIMIT %s',
        (EMBEDDING_SAMPLE_ROWS,),
    )
    sample = await cursor.fetchall()
    if sample:
        cursor = await db.execute(
            f'SELECT count(*) FROM "{table}" t JOIN unnest(%s::bigint[], %s::text[])'
            f' AS s (key, embedding) ON t."{key}" = s.key'
            f" WHERE t.{EMBEDDING_COLUMN} IS DISTINCT FROM s.embedding::halfvec",
            ([r[0] for r in sample], [halfvec_text(bytes(r[1])) for r in sample]),
        )
        row = await cursor.fetchone()
        differing = int(row[0]) if row else 0
        if differing:
            problems.append(
                f"{table}: {differing} of {len(sample)} sampled embeddings differ from the"
                " store's own conversion of their vectors"
            )
    return problems


def _difference(check: TableCheck) -> str:
    if check.source_rows != check.target_rows:
        return (
            f"{check.table}: {check.source_rows} rows in the source,"
            f" {check.target_rows} in the target"
        )
    return (
        f"{check.table}: the same {check.source_rows} rows by count, different content"
        f" (sha256 {check.source_sha256[:12]}… in the source, {check.target_sha256[:12]}…"
        " in the target)"
    )


async def verify(source: sqlite3.Connection, db: Connection, plans: Sequence[TablePlan]) -> Outcome:
    """Counts and checksums of every table on both sides (the source read in one
    snapshot), and the embeddings' checks."""
    checks: list[TableCheck] = []
    problems: list[str] = []
    with snapshot(source):
        for plan in plans:
            expected = RowDigest()
            expected.update(source_rows(source, plan, None))
            found = await target_digest(db, plan)
            check = TableCheck(
                table=plan.name,
                source_rows=expected.rows,
                target_rows=found.rows,
                source_sha256=expected.hexdigest(),
                target_sha256=found.hexdigest(),
            )
            checks.append(check)
            if not check.ok:
                problems.append(_difference(check))
            problems.extend(await embedding_problems(db, plan))
    return Outcome(checks=tuple(checks), problems=tuple(problems))

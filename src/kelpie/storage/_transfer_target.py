"""The PostgreSQL side of `migrate-db`: its catalog, whether it may be filled, the copy of a
batch with the bookkeeping of how far the copy got, and the identity sequences.

The bookkeeping is a table in the target (`PROGRESS_TABLE`), one row per copied table with
the key of the last row copied, written in the transaction of each batch: a batch is
either in the target with its progress, or neither is, so a migration stopped anywhere
(Ctrl-C, a lost connection, a crash of either side) continues where it stopped when run
again, without a duplicate. The table goes once the copy is verified.
"""

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

import psycopg

from kelpie.storage._transfer_rows import halfvec_dumper
from kelpie.storage._transfer_schema import (
    COPIED_TABLES,
    PROGRESS_TABLE,
    SEEDED_TABLES,
    PgColumn,
    PgSchema,
    TablePlan,
    TransferRefused,
    unknown_target_tables,
)

Connection = psycopg.AsyncConnection[tuple[Any, ...]]

# Session-level advisory lock key ("kelpie" in ASCII, then 1): one migrate-db per target.
MIGRATE_LOCK_KEY: Final = 0x6B656C706965_0001

_COLUMNS_SQL: Final = """
SELECT c.relname, a.attname, a.atttypid::int, t.typname, a.attgenerated <> '',
       a.attidentity <> ''
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
_KEYS_SQL: Final = """
SELECT c.relname, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
CROSS JOIN unnest(con.conkey) WITH ORDINALITY AS k (attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE con.contype = 'p' AND c.relnamespace = current_schema()::regnamespace
GROUP BY c.relname
"""
_REFERENCES_SQL: Final = """
SELECT c.relname, array_agg(DISTINCT p.relname::text)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_class p ON p.oid = con.confrelid
WHERE con.contype = 'f' AND c.relnamespace = current_schema()::regnamespace
GROUP BY c.relname
"""


@final
@dataclasses.dataclass(frozen=True)
class TableProgress:
    """How far the copy of one table got: its rows copied, and the last one's key."""

    rows: int = 0
    last_key: tuple[Any, ...] | None = None
    done: bool = False


async def take_lock(db: Connection) -> None:
    """Holds the target for this run (released when the connection closes)."""
    cursor = await db.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
    row = await cursor.fetchone()
    if row is None or not row[0]:
        raise TransferRefused("another migrate-db is running on the target")


async def existing_tables(db: Connection) -> list[str]:
    cursor = await db.execute(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()"
    )
    return sorted(str(row[0]) for row in await cursor.fetchall())


async def check_target(db: Connection, source: str) -> bool:
    """Whether the target continues an unfinished migration from `source` (True), or is
    new (False, nothing Kelpie's in it but what its migrations seed). Anything else
    refuses: tables of another application, another migration's, or data already."""
    tables = await existing_tables(db)
    foreign = unknown_target_tables(tables)
    if foreign:
        raise TransferRefused(
            f"the target holds tables that are not Kelpie's ({', '.join(foreign[:5])}):"
            " migrate-db fills a new, empty database"
        )
    if PROGRESS_TABLE in tables:
        cursor = await db.execute(f"SELECT DISTINCT source FROM {PROGRESS_TABLE}")
        sources = sorted(str(row[0]) for row in await cursor.fetchall())
        if sources and sources != [source]:
            raise TransferRefused(
                f"the target holds an unfinished migration from {', '.join(sources)}: run"
                " migrate-db from that database to finish it, or migrate into a new database"
            )
        return True
    filled = []
    for table in sorted((COPIED_TABLES - SEEDED_TABLES) & set(tables)):
        cursor = await db.execute(f'SELECT EXISTS (SELECT 1 FROM "{table}")')
        row = await cursor.fetchone()
        if row is not None and row[0]:
            filled.append(table)
    if filled:
        raise TransferRefused(
            f"the target already holds data (in {', '.join(filled[:5])}): migrate-db fills"
            " a new, empty database"
        )
    return False


async def read_schema(db: Connection) -> PgSchema:
    columns: dict[str, list[PgColumn]] = {}
    for table, name, oid, type_name, generated, identity in await (
        await db.execute(_COLUMNS_SQL)
    ).fetchall():
        columns.setdefault(table, []).append(
            PgColumn(table, name, oid, type_name, bool(generated), bool(identity))
        )
    keys = {table: tuple(key) for table, key in await (await db.execute(_KEYS_SQL)).fetchall()}
    references = {
        table: frozenset(parents)
        for table, parents in await (await db.execute(_REFERENCES_SQL)).fetchall()
    }
    return PgSchema(columns=columns, primary_keys=keys, references=references)


async def start_progress(db: Connection, source: str, tables: Sequence[str]) -> None:
    """The bookkeeping table with a row per table (kept if a run before made it)."""
    async with db.transaction():
        await db.execute(
            f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} ("
            ' table_name TEXT COLLATE "C" PRIMARY KEY, source TEXT NOT NULL,'
            " rows_copied BIGINT NOT NULL DEFAULT 0, last_key TEXT,"
            " done BOOLEAN NOT NULL DEFAULT FALSE)"
        )
        await db.cursor().executemany(
            f"INSERT INTO {PROGRESS_TABLE} (table_name, source) VALUES (%s, %s)"
            " ON CONFLICT (table_name) DO NOTHING",
            [(table, source) for table in tables],
        )


async def read_progress(db: Connection) -> dict[str, TableProgress]:
    cursor = await db.execute(
        f"SELECT table_name, rows_copied, last_key, done FROM {PROGRESS_TABLE}"
    )
    return {
        str(table): TableProgress(
            rows=int(rows),
            last_key=None if key is None else tuple(json.loads(key)),
            done=bool(done),
        )
        for table, rows, key, done in await cursor.fetchall()
    }


async def copy_batch(
    db: Connection, plan: TablePlan, rows: Sequence[tuple[Any, ...]], before: TableProgress
) -> TableProgress:
    """COPYs the rows (in key order, past `before`) and records the progress they make, in
    one transaction. The first batch of a seeded table replaces the migrations' rows."""
    assert rows, "a batch of no rows"
    columns = [*plan.columns, *(["embedding"] if plan.embedding_oid is not None else [])]
    oids = [*plan.type_oids, *([plan.embedding_oid] if plan.embedding_oid is not None else [])]
    if plan.embedding_oid is not None:
        db.adapters.register_dumper(None, halfvec_dumper(plan.embedding_oid))
    last = rows[-1]
    after = TableProgress(
        rows=before.rows + len(rows), last_key=tuple(last[i] for i in plan.key_positions)
    )
    assert after.last_key is not None, "a batch has a last row"
    assert before.last_key is None or after.last_key > before.last_key, "rows out of key order"
    names = ", ".join(f'"{column}"' for column in columns)
    async with db.transaction(), db.cursor() as cursor:
        if before.rows == 0 and plan.name in SEEDED_TABLES:
            await cursor.execute(f'DELETE FROM "{plan.name}"')
        async with cursor.copy(f'COPY "{plan.name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types(oids)
            for row in rows:
                await copy.write_row(row)
        await cursor.execute(
            f"UPDATE {PROGRESS_TABLE} SET rows_copied = %s, last_key = %s WHERE table_name = %s",
            (after.rows, json.dumps(list(after.last_key or ())), plan.name),
        )
        assert cursor.rowcount == 1, f"no progress row for {plan.name}"
    return after


async def mark_done(db: Connection, table: str) -> None:
    await db.execute(f"UPDATE {PROGRESS_TABLE} SET done = TRUE WHERE table_name = %s", (table,))


async def drop_progress(db: Connection) -> None:
    await db.execute(f"DROP TABLE IF EXISTS {PROGRESS_TABLE}")


async def reset_identities(
    db: Connection, plans: Sequence[TablePlan], floors: Mapping[str, int]
) -> None:
    """Moves each identity sequence past the largest key copied, or past the largest key
    SQLite ever gave (`floors`, from sqlite_sequence) if larger: keys are never reused."""
    for plan in plans:
        if plan.identity is None:
            continue
        cursor = await db.execute(f'SELECT max("{plan.identity}") FROM "{plan.name}"')
        row = await cursor.fetchone()
        largest = max(int(row[0] or 0) if row else 0, floors.get(plan.name, 0))
        await db.execute(
            "SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)",
            (plan.name, plan.identity, max(largest, 1), largest >= 1),
        )

"""The rows `migrate-db` moves: the SQLite source opened read-only and checked, its rows in
key order as the target's values (in batches bounded in rows and bytes), the halfvec
`embedding` made from each float32 `vector`, and the canonical form both sides hash.
"""

import contextlib
import functools
import hashlib
import sqlite3
import struct
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import numpy as np
from psycopg.adapt import Dumper
from psycopg.pq import Format

from kelpie.storage import _migrations
from kelpie.storage._errors import StorageUnavailable
from kelpie.storage._health import pending_migrations
from kelpie.storage._pg_search import HNSW_DIM_MAX
from kelpie.storage._transfer_schema import TablePlan, TransferRefused

# A batch is one COPY and one transaction on the target: bounded both ways, so a table of
# large rows (tool outputs, vectors) does not hold gigabytes in memory at once.
BATCH_ROWS_DEFAULT: Final = 2_000
BATCH_BYTES_MAX: Final = 16 * 2**20
# What counts for an integer or a NULL in a batch's byte estimate.
_SCALAR_BYTES: Final = 8
# Rows fetched from SQLite at a time.
FETCH_ROWS: Final = 500


def open_source(path: Path) -> sqlite3.Connection:
    """The SQLite database at `path`, read-only, after checking it is one, at this Kelpie's
    schema version. Raises TransferRefused saying what is wrong; writes nothing."""
    if not path.is_file():
        raise TransferRefused(f"no SQLite database at {path}")
    try:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise TransferRefused(f"cannot open {path}: {error}") from error
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        applied = {row[0] for row in db.execute("SELECT migration_id FROM _yoyo_migration")}
        missing = pending_migrations(path)
    except sqlite3.DatabaseError as error:
        db.close()
        if "no such table" in str(error):
            raise TransferRefused(f"{path} is not a Kelpie database") from error
        raise TransferRefused(f"{path} is not a SQLite database ({error})") from error
    except StorageUnavailable as error:
        db.close()
        raise TransferRefused(str(error)) from error
    newer = sorted(applied - set(_migrations.migration_ids()))
    if newer or missing:
        db.close()
        if newer:
            raise TransferRefused(
                f"{path} has schema migrations this Kelpie does not know ({', '.join(newer)}):"
                " run migrate-db of the Kelpie version that wrote it"
            )
        raise TransferRefused(
            f"{path} lacks schema migrations {', '.join(missing)}: start this Kelpie on it once"
            f" (kelpie serve --db sqlite:///{path}) so it is brought up to date, then run again"
        )
    return db


def with_embedding(plan: TablePlan, row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row with its `embedding` appended when the table has one: the float32 vector
    (made halfvec by `halfvec_dumper`) where the PostgreSQL store would index it, else None
    (no vector yet, or past HNSW's dimensions: searched exactly, as the store does)."""
    if plan.embedding_oid is None:
        return row
    dim, vector = row[plan.columns.index("dim")], row[plan.columns.index("vector")]
    indexed = vector is not None and dim is not None and dim <= HNSW_DIM_MAX
    return (*row, vector if indexed else None)


def source_rows(
    db: sqlite3.Connection, plan: TablePlan, after: Sequence[Any] | None
) -> Generator[tuple[Any, ...], None, None]:
    """The table's rows past the key `after` (all: None), in key order, converted."""
    params = () if after is None else tuple(after)
    assert after is None or len(params) == len(plan.key), "a resume key per key column"
    cursor = db.execute(plan.source_query(after=after is not None), params)
    try:
        while rows := cursor.fetchmany(FETCH_ROWS):
            for row in rows:
                yield plan.convert(row)
    finally:
        cursor.close()


def _row_bytes(row: Sequence[Any]) -> int:
    return sum(len(value) if isinstance(value, str | bytes) else _SCALAR_BYTES for value in row)


def batches(
    rows: Iterable[tuple[Any, ...]], *, batch_rows: int, batch_bytes: int = BATCH_BYTES_MAX
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows in batches of at most `batch_rows` rows and about `batch_bytes` bytes (a
    batch closes at the row that reaches it; a single larger row is a batch of its own)."""
    assert batch_rows >= 1, "a batch holds at least one row"
    assert batch_bytes >= 1, "a batch holds at least one byte"
    batch: list[tuple[Any, ...]] = []
    size = 0
    for row in rows:
        batch.append(row)
        size += _row_bytes(row)
        if len(batch) >= batch_rows or size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


@functools.cache
def halfvec_dumper(oid: int) -> type[Dumper]:
    """A binary COPY dumper of float32 little-endian bytes into pgvector's `halfvec` (whose
    oid differs per database): int16 dimension, int16 zero, big-endian halves. numpy
    rounds to nearest even, as pgvector does reading the store's text form (verification
    compares a sample against that form, `_pg_search.halfvec_text`)."""
    assert oid > 0, "halfvec's oid comes from the target's catalog"

    class HalfvecDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            values = np.frombuffer(obj, dtype="<f4")
            assert 0 < values.size <= HNSW_DIM_MAX, "halfvec dimension out of range"
            return struct.pack(">hh", values.size, 0) + values.astype(">f2").tobytes()

    HalfvecDumper.oid = oid
    return HalfvecDumper


def _canonical(value: Any) -> bytes:
    """One value, typed and length-prefixed, so no two rows hash alike by accident. Flags
    count as integers (SQLite keeps them as 0/1)."""
    if value is None:
        return b"n"
    if isinstance(value, bool | int):
        return b"i%d;" % int(value)
    if isinstance(value, str):
        raw = value.encode()
        return b"s%d:" % len(raw) + raw
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return b"b%d:" % len(raw) + raw
    raise AssertionError(f"no canonical form for {type(value).__name__}")


class RowDigest:
    """sha256 over rows in key order and how many there were: fed in chunks on each side,
    so memory stays bounded whatever the table's size."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.rows = 0

    def update(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self._hash.update(b"".join(_canonical(value) for value in row))
            self.rows += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@contextlib.contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: every table read inside it comes from the same moment, so a
    run copies rows whose references are consistent even if the source is being written."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("ROLLBACK")

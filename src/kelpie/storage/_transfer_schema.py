"""What `migrate-db` knows of the two schemas, and the copy plan it derives from them.

Every SQLite table must be known here: copied (a PostgreSQL table of the same name), folded
into a copied table (FTS5 text becomes the index rows' `text`), or bookkeeping of SQLite or
yoyo. A table this module does not know refuses the migration before anything is written,
so a future migration cannot add a table that `migrate-db` silently leaves behind.

Columns come from the live schemas (`PRAGMA table_info`, `pg_attribute`): a column both
sides have is copied as is; a PostgreSQL column SQLite lacks must be one this module
derives (from the row's JSON or the FTS5 text); anything else refuses, as does a type the
copy cannot convert. Tables are copied in foreign-key order (PostgreSQL's constraints),
rows in primary-key order.
"""

import dataclasses
import datetime as dt
import functools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, final

from pydantic import TypeAdapter

from kelpie.schemas import us_from_datetime
from kelpie.storage._pg_rows import searchable

# The tables copied row for row (their PostgreSQL twins have the same names).
COPIED_TABLES: Final = frozenset(
    {
        "agents",
        "agent_tags",
        "agent_blocks",
        "agent_tools",
        "blocks",
        "block_tags",
        "block_history",
        "tools",
        "context_messages",
        "conversations",
        "messages",
        "runs",
        "steps",
        "run_events",
        "archives",
        "agent_archives",
        "passages",
        "passage_index",
        "passage_tags",
        "message_index",
        "search_counters",
        "working_memory",
        "mcp_servers",
        "api_keys",
    }
)
# FTS5 tables whose text PostgreSQL keeps in a column of the index table.
FOLDED_TABLES: Final = {"passage_fts": "passage_index", "message_fts": "message_index"}
_FTS5_SHADOWS: Final = ("_data", "_idx", "_content", "_docsize", "_config")
# Bookkeeping that is not data: yoyo's (each side has its own), SQLite's key counters
# (read for the identity sequences, see `sqlite_sequences`) and planner statistics.
_YOYO_TABLES: Final = frozenset({"_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock"})
SQLITE_INTERNAL_TABLES: Final = _YOYO_TABLES | {
    "sqlite_sequence",
    "sqlite_stat1",
    "sqlite_stat4",
}
# The target's own bookkeeping of a migration in progress (see `_transfer_target`).
PROGRESS_TABLE: Final = "_kelpie_migrate_db"
TARGET_OWN_TABLES: Final = _YOYO_TABLES | {PROGRESS_TABLE}
# Tables the target's migrations fill with rows of their own, which the copy replaces.
SEEDED_TABLES: Final = frozenset({"search_counters"})
# The halfvec copy of `vector` (pgvector), filled by the copy itself, not from SQLite.
EMBEDDING_COLUMN: Final = "embedding"

_DATETIME: Final = TypeAdapter(dt.datetime)


def _us(value: Any) -> int | None:
    """An ISO time from a row's JSON, as the integer microseconds of a time column."""
    return None if value is None else us_from_datetime(_DATETIME.validate_python(value))


def _nul_free(value: Any) -> Any:
    return searchable(value) if isinstance(value, str) else value


@final
@dataclasses.dataclass(frozen=True)
class Derived:
    """A PostgreSQL column SQLite lacks: an SQLite expression on the row `t`, then a
    conversion of its value."""

    expression: str
    convert: Callable[[Any], Any] = lambda value: value


@functools.lru_cache(maxsize=1)
def _parsed(data: str) -> Any:
    """The row's JSON, parsed once for all the columns derived from it (they are converted
    one after another, so the last row's is the one asked for)."""
    return json.loads(data)


def _field(name: str, convert: Callable[[Any], Any] = lambda value: value) -> Derived:
    """A field of the row's JSON, parsed in Python: SQLite's json_extract ends a string at
    its first NUL, where the PostgreSQL store's copy drops only the NUL."""
    return Derived("t.data", lambda data: convert(_parsed(data).get(name)))


# PostgreSQL columns laid over the row's JSON, or searchable copies (see migration 0001 and
# 0003 of migrations/postgres): what the PostgreSQL store writes beside the JSON.
DERIVED: Final[Mapping[str, Mapping[str, Derived]]] = {
    "agents": {
        "last_run_completion": _field("last_run_completion", _us),
        "last_run_duration_ms": _field("last_run_duration_ms"),
        "last_stop_reason": _field("last_stop_reason"),
    },
    "blocks": {
        "value": _field("value", _nul_free),
        "description": _field("description", _nul_free),
    },
    "conversations": {"summary": _field("summary", _nul_free)},
    "passage_index": {
        "text": Derived("(SELECT f.text FROM passage_fts f WHERE f.rowid = t.seq)", _nul_free)
    },
    "message_index": {
        "text": Derived("(SELECT f.text FROM message_fts f WHERE f.rowid = t.seq)", _nul_free)
    },
}
# Shared columns whose PostgreSQL copy drops NUL, as the PostgreSQL store writes them.
NUL_FREE_COLUMNS: Final = frozenset({("passages", "text"), ("passage_tags", "tag")})


class TransferRefused(Exception):
    """The migration cannot start, or go on, as asked; the message says why (one line)."""


def _as_bool(value: Any) -> bool:
    assert value in (0, 1), f"not a flag: {value!r}"
    return bool(value)


def _as_int(value: Any) -> int:
    assert isinstance(value, int), f"not an integer: {value!r}"
    assert not isinstance(value, bool), f"a flag, not an integer: {value!r}"
    return value


def _as_text(value: Any) -> str:
    assert isinstance(value, str), f"not text: {value!r}"
    return value


def _as_bytes(value: Any) -> bytes:
    assert isinstance(value, bytes), f"not bytes: {value!r}"
    return value


# PostgreSQL types the copy writes, with the conversion of SQLite's value to each.
_CONVERSIONS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "bool": _as_bool,
    "int4": _as_int,
    "int8": _as_int,
    "text": _as_text,
    "bytea": _as_bytes,
}


@final
@dataclasses.dataclass(frozen=True)
class PgColumn:
    table: str
    name: str
    type_oid: int
    type_name: str
    generated: bool
    identity: bool


@final
@dataclasses.dataclass(frozen=True)
class PgSchema:
    """The target's tables as its catalog describes them (see `_transfer_target.read_schema`)."""

    columns: Mapping[str, Sequence[PgColumn]]  # in column order
    primary_keys: Mapping[str, tuple[str, ...]]
    references: Mapping[str, frozenset[str]]  # table -> the tables it references


@final
@dataclasses.dataclass(frozen=True)
class TablePlan:
    """How one table is copied: the target columns (those checksummed first, then the
    embedding if the table has one), the SQLite query yielding them, and the conversion of
    each value."""

    name: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    type_oids: tuple[int, ...]
    expressions: tuple[str, ...]
    converts: tuple[Callable[[Any], Any], ...]
    embedding_oid: int | None  # the halfvec type, when the table has an embedding
    identity: str | None  # the identity column, whose sequence is moved past the copy

    def __post_init__(self) -> None:
        assert self.key, f"{self.name} has no primary key"
        assert set(self.key) <= set(self.columns), "a key column is not copied"
        assert len(self.columns) == len(self.type_oids) == len(self.expressions)
        assert len(self.columns) == len(self.converts)

    @property
    def key_positions(self) -> tuple[int, ...]:
        return tuple(self.columns.index(column) for column in self.key)

    def source_query(self, *, after: bool) -> str:
        """The rows in key order; `after`: only those past a key (one `?` per key column)."""
        keys = ", ".join(f't."{column}"' for column in self.key)
        where = f" WHERE ({keys}) > ({', '.join('?' * len(self.key))})" if after else ""
        return f'SELECT {", ".join(self.expressions)} FROM "{self.name}" t{where} ORDER BY {keys}'

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """SQLite's row as the target's values (without the embedding)."""
        return tuple(
            None if value is None else convert(value)
            for convert, value in zip(self.converts, row, strict=True)
        )


def _fts_shadows(table: str) -> set[str]:
    return {f"{table}{suffix}" for suffix in _FTS5_SHADOWS}


def unknown_source_tables(names: Sequence[str]) -> list[str]:
    """SQLite tables this module does not know (each refuses the migration)."""
    known = set(COPIED_TABLES) | set(FOLDED_TABLES) | set(SQLITE_INTERNAL_TABLES)
    for folded in FOLDED_TABLES:
        known |= _fts_shadows(folded)
    return sorted(set(names) - known)


def unknown_target_tables(names: Sequence[str]) -> list[str]:
    """PostgreSQL tables neither Kelpie's nor this module's (a database of something else)."""
    return sorted(set(names) - COPIED_TABLES - TARGET_OWN_TABLES)


def source_tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [str(row[0]) for row in rows]


def sqlite_sequences(db: sqlite3.Connection) -> dict[str, int]:
    """The largest key each AUTOINCREMENT table ever gave (deleted rows' keys included)."""
    return {
        str(name): int(seq) for name, seq in db.execute("SELECT name, seq FROM sqlite_sequence")
    }


def _sqlite_columns(db: sqlite3.Connection, table: str) -> tuple[list[str], tuple[str, ...]]:
    """The table's columns, and its primary key in key order."""
    info = db.execute(f'PRAGMA table_info("{table}")').fetchall()
    columns = [str(row[1]) for row in info]
    key = tuple(str(row[1]) for row in sorted(info, key=lambda row: row[5]) if row[5] > 0)
    return columns, key


def foreign_key_order(tables: Sequence[str], references: Mapping[str, frozenset[str]]) -> list[str]:
    """The tables, each after every table it references (ties by name, so the order is
    the same on every run: a resumed migration walks the tables as the first run did)."""
    remaining = {table: set(references.get(table, ())) & set(tables) for table in tables}
    for table, parents in remaining.items():
        parents.discard(table)
    order: list[str] = []
    while remaining:
        ready = sorted(table for table, parents in remaining.items() if not parents)
        if not ready:
            raise TransferRefused(f"foreign keys form a cycle among {sorted(remaining)}")
        for table in ready:
            order.append(table)
            del remaining[table]
        for parents in remaining.values():
            parents.difference_update(ready)
    return order


def _plan_table(db: sqlite3.Connection, table: str, target: PgSchema) -> TablePlan:
    source_columns, source_key = _sqlite_columns(db, table)
    key = target.primary_keys.get(table, ())
    if key != source_key:
        raise TransferRefused(
            f"table {table} has primary key {source_key} in SQLite but {key} in PostgreSQL"
        )
    derived = DERIVED.get(table, {})
    columns: list[str] = []
    oids: list[int] = []
    expressions: list[str] = []
    converts: list[Callable[[Any], Any]] = []
    embedding_oid: int | None = None
    identity: str | None = None
    for column in target.columns[table]:
        if column.generated:
            continue
        if column.name == EMBEDDING_COLUMN and column.type_name == "halfvec":
            embedding_oid = column.type_oid
            continue
        to_type = _CONVERSIONS.get(column.type_name)
        if to_type is None:
            raise TransferRefused(f"column {table}.{column.name} has a type migrate-db cannot copy")
        step: Callable[[Any], Any] | None = None
        if column.name in source_columns:
            expression = f't."{column.name}"'
            if (table, column.name) in NUL_FREE_COLUMNS:
                step = _nul_free
        elif column.name in derived:
            expression = derived[column.name].expression
            step = derived[column.name].convert
        else:
            raise TransferRefused(
                f"column {table}.{column.name} is in PostgreSQL only, and not one migrate-db"
                " knows how to fill"
            )
        columns.append(column.name)
        oids.append(column.type_oid)
        expressions.append(expression)
        converts.append(to_type if step is None else _compose(step, to_type))
        if column.identity:
            assert identity is None, f"{table} has two identity columns"
            identity = column.name
    missing = sorted(set(source_columns) - set(columns))
    if missing:
        raise TransferRefused(f"columns of {table} in SQLite only: {', '.join(missing)}")
    if embedding_oid is not None:
        assert {"dim", "vector"} <= set(columns), f"{table} has an embedding without a vector"
    return TablePlan(
        name=table,
        key=key,
        columns=tuple(columns),
        type_oids=tuple(oids),
        expressions=tuple(expressions),
        converts=tuple(converts),
        embedding_oid=embedding_oid,
        identity=identity,
    )


def _compose(first: Callable[[Any], Any], then: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def both(value: Any) -> Any:
        converted = first(value)
        return None if converted is None else then(converted)

    return both


def plan(db: sqlite3.Connection, target: PgSchema) -> list[TablePlan]:
    """The copy of every table, in foreign-key order. Raises TransferRefused when the
    schemas are not the two this module knows (a table or column of one side only)."""
    unknown = unknown_source_tables(source_tables(db))
    if unknown:
        raise TransferRefused(f"tables migrate-db does not know in the source: {unknown}")
    absent = sorted(COPIED_TABLES - set(target.columns))
    if absent:
        raise TransferRefused(f"tables missing from the target: {', '.join(absent)}")
    order = foreign_key_order(sorted(COPIED_TABLES), target.references)
    return [_plan_table(db, table, target) for table in order]

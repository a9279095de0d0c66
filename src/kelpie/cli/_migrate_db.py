"""`kelpie migrate-db --from sqlite:///path --to postgresql://…`: copies a SQLite store into a
new PostgreSQL database, verifies the copy, and says so. The work is the storage layer's
(`kelpie.storage._transfer`); this prints its progress and maps its outcome to the exit
status: 0 verified, 1 stopped or differing (run again to continue), 2 refused (nothing
written)."""

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import click

from kelpie.cli._env import POSTGRES_URL_PREFIXES, SQLITE_URL_PREFIX
from kelpie.storage import StorageUnavailable

if TYPE_CHECKING:  # imported when the command runs: psycopg is an optional extra
    from kelpie.storage._transfer import Outcome, TableCopied

EXIT_DIFFERS: Final = 1
EXIT_REFUSED: Final = 2
# A table being copied reports its rows at most this often.
PROGRESS_INTERVAL_S: Final = 10.0
_NAME_WIDTH: Final = 18


def _one_line(message: str) -> str:
    """Driver messages run over lines (libpq adds hints); a refusal is one line."""
    return " ".join(message.split())


def _refuse(message: str) -> NoReturn:
    click.echo(f"kelpie migrate-db: {_one_line(message)}", err=True)
    sys.exit(EXIT_REFUSED)


class _Printed:
    """Progress as lines on stdout: a line per table, and one per PROGRESS_INTERVAL_S
    while a long table is copied."""

    def __init__(self) -> None:
        self._last_line = time.perf_counter()

    def phase(self, text: str) -> None:
        click.echo(text)

    def batch_copied(self, table: str, rows: int) -> None:
        now = time.perf_counter()
        if now - self._last_line >= PROGRESS_INTERVAL_S:
            self._last_line = now
            click.echo(f"  {table:<{_NAME_WIDTH}} {rows:>12,} rows so far")

    def table_copied(self, copied: "TableCopied") -> None:
        self._last_line = time.perf_counter()
        earlier = f" (and {copied.earlier_rows:,} copied before)" if copied.earlier_rows else ""
        click.echo(
            f"  {copied.table:<{_NAME_WIDTH}} {copied.rows:>12,} rows {copied.seconds:7.1f} s"
            f" {copied.rows_per_s:>10,.0f} rows/s{earlier}"
        )


def _print_checks(outcome: "Outcome") -> None:
    click.echo(f"{'table':<{_NAME_WIDTH}} {'source rows':>12} {'target rows':>12}  sha256")
    for check in outcome.checks:
        same = "equal" if check.ok else f"DIFFERS ({check.source_sha256[:12]}…)"
        click.echo(
            f"{check.table:<{_NAME_WIDTH}} {check.source_rows:>12,} {check.target_rows:>12,}"
            f"  {check.target_sha256[:12]}… {same}"
        )


def _source_path(source_url: str, target_url: str) -> Path:
    if source_url == target_url:
        _refuse("--from and --to name the same database")
    if not source_url.startswith(SQLITE_URL_PREFIX):
        _refuse(f"--from must be a SQLite URL, {SQLITE_URL_PREFIX}path/to/kelpie.db")
    if not target_url.startswith(POSTGRES_URL_PREFIXES):
        _refuse("--to must be a PostgreSQL URL, postgresql://user:password@host/database")
    return Path(source_url.removeprefix(SQLITE_URL_PREFIX))


@click.command("migrate-db")
@click.option("--from", "source_url", required=True, help="The SQLite store: sqlite:///path.")
@click.option("--to", "target_url", required=True, help="A new PostgreSQL database: postgresql://…")
@click.option(
    "--batch-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows per COPY and transaction (default 2000).",
)
def migrate_db(source_url: str, target_url: str, batch_rows: int | None) -> None:
    """Copy a SQLite store into a new PostgreSQL database and verify the copy. Stop the
    server first. Interrupted, the same command continues where it stopped."""
    source = _source_path(source_url, target_url)
    try:
        from kelpie.storage._transfer import BATCH_ROWS_DEFAULT, TransferRefused, migrate
    except ImportError as error:
        _refuse(
            "PostgreSQL needs its driver: install `kelpie[postgres]`"
            f" (pip install 'kelpie[postgres]') ({error})"
        )
    try:
        outcome = asyncio.run(
            migrate(
                source,
                target_url,
                batch_rows=batch_rows or BATCH_ROWS_DEFAULT,
                progress=_Printed(),
            )
        )
    except TransferRefused as refused:
        _refuse(str(refused))
    except StorageUnavailable as error:
        click.echo(
            f"kelpie migrate-db: the migration stopped: {_one_line(error.detail)}\n"
            "Run the same command again to continue where it stopped.",
            err=True,
        )
        sys.exit(EXIT_DIFFERS)
    _print_checks(outcome)
    if not outcome.verified:
        click.echo("NOT verified: the target differs from the source:", err=True)
        for problem in outcome.problems:
            click.echo(f"  {problem}", err=True)
        click.echo(
            "Was the source written to meanwhile? Stop the server, then migrate again into"
            " a new database.",
            err=True,
        )
        sys.exit(EXIT_DIFFERS)
    click.echo("verified")

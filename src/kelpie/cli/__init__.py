"""Command line: `kelpie serve` and `kelpie reembed`. Builds the production Env; the only
place that reads the process environment."""

import os

# One BLAS thread: the exact vector scan is memory-bound, and on a busy machine several BLAS
# threads made a 100k x 384 scan 2-3x slower (measured 30-45 ms vs 13-15 ms). Set before
# anything imports numpy; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from kelpie.cli._doctor import doctor
from kelpie.cli._keys import keys
from kelpie.cli._migrate_db import migrate_db
from kelpie.cli._reembed import reembed
from kelpie.cli._serve import serve


@click.group()
@click.version_option(package_name="kelpie")
def main() -> None:
    """Kelpie: a self-hosted runtime for stateful agents that speaks the Letta REST API."""


main.add_command(serve)
main.add_command(reembed)
main.add_command(keys)
main.add_command(doctor)
main.add_command(migrate_db)

__all__ = ["main"]

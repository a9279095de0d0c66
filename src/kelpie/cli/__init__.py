"""Command line: `kelpie serve`. Builds the production Env; the only place that reads the
process environment."""

import click

from kelpie.cli._serve import serve


@click.group()
@click.version_option(package_name="kelpie")
def main() -> None:
    """Kelpie: a self-hosted runtime for stateful agents that speaks the Letta REST API."""


main.add_command(serve)

__all__ = ["main"]

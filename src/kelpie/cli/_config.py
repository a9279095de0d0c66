"""How every command reads its configuration: flags, then the environment, then the config
file (`--config`, or `KELPIE_CONFIG`), then the defaults. A wrong value stops the command
with one line naming the setting, not a traceback."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

import click

from kelpie.env import Config, ConfigError

CONFIG_VARIABLE: Final = "KELPIE_CONFIG"

F = TypeVar("F", bound=Callable[..., object])


def config_option(command: F) -> F:
    """`--config PATH` (or KELPIE_CONFIG): a TOML file of settings."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar=CONFIG_VARIABLE,
        default=None,
        help=(
            "TOML file of settings, keys named as in the README's table (env KELPIE_CONFIG);"
            " flags and environment variables win over it."
        ),
    )(command)


def load_config(config_file: Path | None, **flags: object) -> Config:
    """The command's Config; unset flags are None."""
    try:
        return Config.from_environ(os.environ, config_file=config_file, **flags)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error

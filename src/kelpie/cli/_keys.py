"""`kelpie keys create|list|revoke`: API keys, managed on the data dir's database directly,
also while a server runs on it (the server sees a new key at once and a revocation within
`KEYS_RELOAD_S`). The first key turns key authentication on (README, "API keys")."""

import asyncio
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

import click
import pydantic

from kelpie.cli._config import config_option, load_config
from kelpie.cli._env import open_store
from kelpie.env import Config, SystemClock, system_entropy
from kelpie.errors import KelpieError
from kelpie.schemas import ApiKeyCreate, ApiKeyInfo, datetime_from_us
from kelpie.service import KEYS_RELOAD_S, ApiKeyService

_DURATION_RE: Final = re.compile(r"(\d+)([smhdw]?)")
_SECONDS_PER_UNIT: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


def _database_options(command: F) -> F:
    command = click.option(
        "--db", "db_url", default=None, help="Database URL (env KELPIE_DB_URL)."
    )(command)
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Where data lives (env KELPIE_DATA_DIR; default ~/.kelpie).",
    )(command)
    return config_option(command)


def _run(
    config_file: Path | None,
    data_dir: Path | None,
    db_url: str | None,
    work: Callable[[ApiKeyService], Awaitable[T]],
) -> T:
    """Runs `work` against the configured database; Kelpie's errors end the command with
    their detail."""
    config: Config = load_config(config_file, data_dir=data_dir, db_url=db_url)
    store = open_store(config, serving=False)

    async def run() -> T:
        try:
            return await work(ApiKeyService(store, SystemClock(), system_entropy()))
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except KelpieError as error:
        raise click.ClickException(error.detail) from error


def parse_duration_s(text: str) -> int:
    """`90` or `90s`, `15m`, `12h`, `30d`, `2w`: whole seconds, at least one."""
    found = _DURATION_RE.fullmatch(text.strip().lower())
    if found is None or int(found[1]) == 0:
        raise click.BadParameter(f"'{text}' is not a duration such as 3600, 90m, 12h or 30d")
    return int(found[1]) * _SECONDS_PER_UNIT[found[2]]


def key_status(key: ApiKeyInfo, now: dt.datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command()
@click.argument("name")
@click.option("--admin", is_flag=True, help="The key may also manage API keys.")
@click.option("--expires-in", default=None, help="Lifetime, e.g. 3600, 90m, 12h, 30d, 2w.")
@click.option(
    "--rate-limit", type=click.IntRange(min=1), default=None, help="Requests a minute at most."
)
@_database_options
def create(
    name: str,
    admin: bool,
    expires_in: str | None,
    rate_limit: int | None,
    config_file: Path | None,
    data_dir: Path | None,
    db_url: str | None,
) -> None:
    """Make a key called NAME. The key is printed once, alone on stdout."""
    expires_at = None
    if expires_in is not None:
        lifetime_us = parse_duration_s(expires_in) * 1_000_000
        expires_at = datetime_from_us(SystemClock().now_us() + lifetime_us)
    try:
        request = ApiKeyCreate(
            name=name, admin=admin, expires_at=expires_at, rate_limit_per_minute=rate_limit
        )
    except pydantic.ValidationError as error:
        raise click.ClickException(f"invalid key: {error.errors()[0]['msg']}") from error
    created = _run(config_file, data_dir, db_url, lambda service: service.create(request))
    expiry = created.expires_at.isoformat() if created.expires_at else "never"
    click.echo(
        f"Created API key '{created.name}' ({created.id}); admin: {'yes' if admin else 'no'},"
        f" expires: {expiry}, rate limit: {rate_limit or 'none'}. Keep the key now: it is"
        " not shown again.",
        err=True,
    )
    click.echo(created.key)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@_database_options
def list_keys(
    as_json: bool, config_file: Path | None, data_dir: Path | None, db_url: str | None
) -> None:
    """List every key (never the keys themselves): revoked and expired ones too."""
    found = _run(config_file, data_dir, db_url, lambda service: service.list_keys())
    if as_json:
        click.echo(json.dumps([key.model_dump(mode="json") for key in found], indent=2))
        return
    now = datetime_from_us(SystemClock().now_us())
    rows = [("ID", "NAME", "STATUS", "ADMIN", "PER MIN", "EXPIRES", "LAST USED")]
    for key in found:
        rows.append(
            (
                key.id,
                key.name,
                key_status(key, now),
                "yes" if key.admin else "no",
                str(key.rate_limit_per_minute or "-"),
                key.expires_at.isoformat(timespec="seconds") if key.expires_at else "-",
                key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@keys.command()
@click.argument("key")
@_database_options
def revoke(key: str, config_file: Path | None, data_dir: Path | None, db_url: str | None) -> None:
    """Revoke KEY (its id, or the name of exactly one unrevoked key)."""

    async def work(service: ApiKeyService) -> ApiKeyInfo:
        listed = await service.list_keys()
        if any(item.id == key for item in listed):
            return await service.revoke(key)
        named = [item for item in listed if item.name == key and item.revoked_at is None]
        if len(named) != 1:
            ids = ", ".join(item.id for item in named)
            reason = (
                f"{len(named)} unrevoked keys are named '{key}': {ids}"
                if named
                else (f"no API key has the id or the name '{key}'")
            )
            raise click.ClickException(reason)
        return await service.revoke(named[0].id)

    revoked = _run(config_file, data_dir, db_url, work)
    click.echo(
        f"Revoked API key '{revoked.name}' ({revoked.id}); a running server refuses it"
        f" within {KEYS_RELOAD_S:g} s."
    )

"""`kelpie serve`: open the store, prepare, and serve HTTP until interrupted."""

import asyncio
import logging
import os
from pathlib import Path

import click

from kelpie.cli._env import open_env
from kelpie.env import Config

log = logging.getLogger("kelpie")


async def _serve(config: Config, log_level: str) -> None:
    import uvicorn

    from kelpie.api import create_app
    from kelpie.service import prepare

    env = open_env(config)
    try:
        await prepare(env)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(env),
                host=config.host,
                port=config.port,
                log_level=log_level,
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )
        await server.serve()
    finally:
        await env.store.close()


@click.command()
@click.option("--host", default=None, help="Address to bind (env KELPIE_HOST; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (env KELPIE_PORT; default 8283).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where data lives (env KELPIE_DATA_DIR; default ~/.kelpie).",
)
@click.option("--db", "db_url", default=None, help="Database URL (env KELPIE_DB_URL).")
@click.option("--log-level", default="info", show_default=True)
def serve(
    host: str | None, port: int | None, data_dir: Path | None, db_url: str | None, log_level: str
) -> None:
    """Start the HTTP server (the Letta REST API) on SQLite."""
    config = Config.from_environ(os.environ, host=host, port=port, data_dir=data_dir, db_url=db_url)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("yoyo", "httpx", "httpx2", "openai", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.info("data in %s; database %s", config.data_dir, config.database_url)
    try:
        import uvloop

        uvloop.run(_serve(config, log_level))
    except ImportError:
        asyncio.run(_serve(config, log_level))

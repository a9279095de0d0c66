"""`kelpie serve`: open the store, prepare, and serve HTTP until interrupted."""

import asyncio
import importlib
import logging
import os
import threading  # noqa: TID251 - production start-up only; see _warm_provider_sdks
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:
    import uvicorn

from kelpie.cli._env import open_env
from kelpie.env import Config
from kelpie.llm import LlmRouter

log = logging.getLogger("kelpie")


SDK_WARM_DELAY_S: Final = 1.0


async def _warm_when_serving(server: "uvicorn.Server", config: Config) -> None:
    """Once the server answers, imports the configured providers' SDKs on a thread: they
    take most of a second to import, which would otherwise land on the first message, and
    importing them before the socket is bound would delay start-up."""
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    await asyncio.sleep(SDK_WARM_DELAY_S)
    _warm_provider_sdks(config)


def _warm_provider_sdks(config: Config) -> None:
    used = {
        "openai": config.openai_api_key or config.openai_base_url,
        "anthropic": config.anthropic_api_key,
    }
    modules = [name for name, configured in used.items() if configured]

    def work() -> None:
        for name in modules:
            importlib.import_module(name)

    if modules:
        threading.Thread(target=work, name="kelpie-warm-sdks", daemon=True).start()


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
        warm = asyncio.ensure_future(_warm_when_serving(server, config))
        await server.serve()
        warm.cancel()
    finally:
        if isinstance(env.llm, LlmRouter):
            await env.llm.aclose()
        await env.sandbox.close()
        await env.mcp.close()
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

"""`kelpie serve`: open the store, prepare, and serve HTTP until interrupted."""

import asyncio
import importlib
import logging
import threading  # noqa: TID251 - production start-up only; see _warm_provider_sdks
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

if TYPE_CHECKING:
    import uvicorn

import pydantic

from kelpie.cli._config import config_option, load_config
from kelpie.cli._env import open_env
from kelpie.cli._exposure import exposure_warning
from kelpie.env import LOG_LEVELS, Config
from kelpie.errors import KelpieError
from kelpie.llm import LlmRouter
from kelpie.obs import configure_logging
from kelpie.schemas import McpServerCreate, McpServersFile
from kelpie.service import McpServerService

log = logging.getLogger("kelpie")


SDK_WARM_DELAY_S: Final = 1.0
# How long an idle kept-alive connection stays open after a response (uvicorn's default).
KEEP_ALIVE_S: Final = 5


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


def _declared_servers(config: Config) -> list[McpServerCreate]:
    """The MCP servers of KELPIE_MCP_SERVERS_FILE; a file that cannot be read or parsed
    stops start-up with the reason (a server missing from the API would be a surprise)."""
    if config.mcp_servers_file is None:
        return []
    try:
        text = config.mcp_servers_file.read_bytes()
        return McpServersFile.model_validate_json(text).requests()
    except (OSError, pydantic.ValidationError) as error:
        raise click.ClickException(
            f"KELPIE_MCP_SERVERS_FILE {config.mcp_servers_file}: {error}"
        ) from error


async def _declare_when_serving(
    server: "uvicorn.Server", mcp_servers: McpServerService, requests: list[McpServerCreate]
) -> None:
    """Registers the declared MCP servers once the server answers (connecting to each can
    take a second); one that cannot be reached is logged and skipped, not fatal."""
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.01)
    for request in requests:
        try:
            done = await mcp_servers.declare(request)
        except KelpieError as error:
            log.warning("MCP server '%s' from the servers file: %s", request.server_name, error)
        else:
            log.info("MCP server '%s' from the servers file: %s", request.server_name, done)


async def _serve(config: Config, log_level: str) -> None:
    import uvicorn

    from kelpie.api import create_app
    from kelpie.cli._protocol import head_guarded_protocol
    from kelpie.cli._server import ClosingServer
    from kelpie.service import prepare

    declared = _declared_servers(config)
    env = open_env(config)
    server: ClosingServer | None = None
    try:
        await prepare(env)
        keys = bool(await env.store.list_api_keys())
        if (warning := exposure_warning(config, api_keys=keys)) is not None:
            log.warning(warning)
        app = create_app(env)
        server = ClosingServer(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                log_level=log_level,
                # uvicorn's lines go through the root logger's format (configure_logging);
                # the request log is Kelpie's own (kelpie.http).
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=5,
                # Abuse limits: slow or oversized request heads are cut off by the
                # protocol, slow bodies by GuardMiddleware; requests past the connection
                # cap are answered 503.
                http=head_guarded_protocol(config.header_timeout_s),
                timeout_keep_alive=KEEP_ALIVE_S,
                limit_concurrency=config.connections_max,
            )
        )
        warm = asyncio.ensure_future(_warm_when_serving(server, config))
        mcp_servers: McpServerService = app.state.services.mcp_servers
        declaring = asyncio.ensure_future(_declare_when_serving(server, mcp_servers, declared))
        await server.serve()
        warm.cancel()
        declaring.cancel()
    finally:
        if isinstance(env.llm, LlmRouter):
            await env.llm.aclose()
        # stdio MCP servers run in the sandbox's namespaces and uids: stopped first.
        await env.mcp.close()
        await env.sandbox.close()
        await env.store.close()
        env.tracing.close()  # exports the spans still queued
    if server is not None:
        server.reraise_signals()


@click.command()
@config_option
@click.option("--host", default=None, help="Address to bind (env KELPIE_HOST; default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (env KELPIE_PORT; default 8283).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where data lives (env KELPIE_DATA_DIR; default ~/.kelpie).",
)
@click.option("--db", "db_url", default=None, help="Database URL (env KELPIE_DB_URL).")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="How much is logged (env KELPIE_LOG_LEVEL; default info).",
)
def serve(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    db_url: str | None,
    log_level: str | None,
) -> None:
    """Start the HTTP server (the Letta REST API) on SQLite."""
    config = load_config(
        config_file,
        host=host,
        port=port,
        data_dir=data_dir,
        db_url=db_url,
        log_level=None if log_level is None else log_level.lower(),
    )
    configure_logging(config.log_level, config.log_format)
    for noisy in ("yoyo", "httpx", "httpx2", "openai", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if config_file is not None:
        log.info("settings from %s (flags and environment variables win)", config_file)
    log.info("data in %s; database %s", config.data_dir, config.database_url)
    try:
        import uvloop

        uvloop.run(_serve(config, config.log_level))
    except ImportError:
        asyncio.run(_serve(config, config.log_level))

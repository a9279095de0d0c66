"""Builds the ASGI application around an Env. The same app serves real sockets (uvicorn)
and the simulator (an in-process ASGI transport)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.routing import Route

from kelpie import __version__
from kelpie.api import (
    admin_keys,
    agent_files,
    agents,
    archives,
    blocks,
    cloud,
    conversations,
    health,
    mcp_servers,
    messages,
    messages_global,
    models,
    runs,
    tools,
    working_memory,
    workspace,
)
from kelpie.api._deps import Services
from kelpie.api._docs import install_docs
from kelpie.api._errors import install_error_handlers
from kelpie.api._middleware import GuardMiddleware
from kelpie.api._observe import install_observability
from kelpie.api.mcp_endpoint import MCP_PATH, McpEndpoint
from kelpie.env import Env


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Background work that lives as long as the app: the embedding worker, housekeeping
    (pruning expired run streams) and the MCP endpoint's session manager. (The simulator
    enters this context itself; an ASGI transport does not.)"""
    services: Services = app.state.services
    endpoint: McpEndpoint = app.state.mcp_endpoint
    workers = [
        asyncio.ensure_future(services.memory.run_worker()),
    ]
    services.messages.housekeeping.run_ended()  # a pass at start-up
    try:
        async with endpoint.running():
            yield
    finally:
        await services.messages.housekeeping.close()
        for worker in workers:
            worker.cancel()
        await asyncio.wait(workers)
        for worker in workers:
            if not worker.cancelled():
                # It can only have stopped by dying with the process (the simulator's crash).
                worker.exception()


def create_app(env: Env) -> FastAPI:
    app = FastAPI(
        lifespan=_lifespan,
        title="Kelpie",
        version=__version__,
        description="A self-hosted runtime for stateful agents that speaks the Letta REST API.",
        redirect_slashes=False,
        # Kelpie traces requests itself (kelpie.obs.Tracing, api._observe): FastAPI's own
        # spans, metrics and logs would double them once a global OpenTelemetry provider is
        # set (tracing on), and its auto-configuration would start exporters of its own.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
        # Served by install_docs from local files, not FastAPI's CDN-loaded pages.
        docs_url=None,
        redoc_url=None,
    )
    app.state.env = env
    app.state.services = Services.build(env)
    install_error_handlers(app)
    routers = (health, models, agents, messages, conversations, blocks, tools, runs, archives)
    for module in (*routers, working_memory, workspace):
        app.include_router(module.router)
    app.include_router(agents.tags_router)
    app.include_router(archives.archives_router)
    app.include_router(archives.passages_router)
    app.include_router(messages.search_router)
    app.include_router(runs.steps_router)
    app.include_router(mcp_servers.router)
    app.include_router(mcp_servers.by_name_router)
    app.state.mcp_endpoint = endpoint = McpEndpoint(app.state.services, host=env.config.host)
    for path in (MCP_PATH, f"{MCP_PATH}/"):
        # An ASGI endpoint (not a request handler): the session manager answers itself.
        app.router.routes.append(Route(path, endpoint, methods=["GET", "POST", "DELETE"]))
    for module in (agent_files, messages_global, cloud, admin_keys):
        app.include_router(module.router)
    app.add_middleware(
        GuardMiddleware,
        password=env.config.server_password,
        clock=env.clock,
        body_timeout_s=env.config.body_timeout_s,
        auth_failures_max=env.config.auth_failures_max,
        auth_failure_window_s=env.config.auth_failure_window_s,
        api_keys=app.state.services.api_key_cache,
    )
    install_docs(app)
    install_observability(app, env, app.state.services)
    return app

"""Builds the ASGI application around an Env. The same app serves real sockets (uvicorn)
and the simulator (an in-process ASGI transport)."""

from fastapi import FastAPI

from kelpie import __version__
from kelpie.api import agents, blocks, health, messages, models, runs, tools, working_memory
from kelpie.api._deps import Services
from kelpie.api._errors import install_error_handlers
from kelpie.api._middleware import GuardMiddleware
from kelpie.env import Env


def create_app(env: Env) -> FastAPI:
    app = FastAPI(
        title="Kelpie",
        version=__version__,
        description="A self-hosted runtime for stateful agents that speaks the Letta REST API.",
        redirect_slashes=False,
    )
    app.state.env = env
    app.state.services = Services.build(env)
    install_error_handlers(app)
    for module in (health, models, agents, messages, blocks, tools, runs, working_memory):
        app.include_router(module.router)
    app.include_router(agents.tags_router)
    app.include_router(runs.steps_router)
    app.add_middleware(GuardMiddleware, password=env.config.server_password)
    return app

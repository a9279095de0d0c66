"""The services a request handler reaches, built once per app. The dependency is async on
purpose: FastAPI runs sync dependencies in a thread pool (a thread hop per request, and no
threads may run under the simulator)."""

import dataclasses
from typing import Annotated, final

from fastapi import Depends, Request

from kelpie.env import Env
from kelpie.service import AgentService, BlockService, ToolService


@final
@dataclasses.dataclass(frozen=True)
class Services:
    agents: AgentService
    blocks: BlockService
    tools: ToolService

    @classmethod
    def build(cls, env: Env) -> "Services":
        return cls(agents=AgentService(env), blocks=BlockService(env), tools=ToolService(env))


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]

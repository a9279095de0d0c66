"""The services a request handler reaches, built once per app. The dependency is async on
purpose: FastAPI runs sync dependencies in a thread pool (a thread hop per request, and no
threads may run under the simulator)."""

import dataclasses
from typing import Annotated, final

from fastapi import Depends, Request

from kelpie.env import Env
from kelpie.memory import MemorySearch
from kelpie.runtime import AgentRuntime
from kelpie.service import (
    AgentExporter,
    AgentImporter,
    AgentService,
    ApiKeyCache,
    ApiKeyService,
    ArchiveService,
    BlockService,
    ContextService,
    ConversationService,
    McpServerService,
    MessageLookup,
    MessageService,
    RecallService,
    ToolRunService,
    ToolService,
    WorkingMemoryService,
    WorkspaceService,
)


@final
@dataclasses.dataclass(frozen=True)
class Services:
    agents: AgentService
    blocks: BlockService
    tools: ToolService
    tool_runs: ToolRunService
    mcp_servers: McpServerService
    messages: MessageService
    conversations: ConversationService
    exporter: AgentExporter
    importer: AgentImporter
    context: ContextService
    message_lookup: MessageLookup
    working_memory: WorkingMemoryService
    workspaces: WorkspaceService
    archives: ArchiveService
    recall: RecallService
    # One per app: its vector cache and embedding worker serve every request.
    memory: MemorySearch
    # The activation table behind `messages` (read by the metrics).
    runtime: AgentRuntime
    # The key records the guard checks requests against, and their management.
    api_key_cache: ApiKeyCache
    api_keys: ApiKeyService

    @classmethod
    def build(cls, env: Env) -> "Services":
        agents = AgentService(env)
        key_cache = ApiKeyCache(env.store, env.clock)
        memory = MemorySearch(env.store, env.embedder, env.clock)
        runtime = AgentRuntime(
            env.clock,
            active_max=env.config.active_agents_max,
            idle_timeout_s=env.config.idle_timeout_s,
        )
        return cls(
            agents=agents,
            blocks=BlockService(env),
            tools=ToolService(env),
            tool_runs=ToolRunService(env, agents),
            mcp_servers=McpServerService(env),
            messages=MessageService(env, agents, runtime, memory),
            conversations=ConversationService(env, agents),
            exporter=AgentExporter(env, agents),
            importer=AgentImporter(env, agents),
            context=ContextService(env, agents),
            message_lookup=MessageLookup(env),
            working_memory=WorkingMemoryService(env),
            workspaces=WorkspaceService(env),
            archives=ArchiveService(env, memory),
            recall=RecallService(env, memory),
            memory=memory,
            runtime=runtime,
            api_key_cache=key_cache,
            api_keys=ApiKeyService(
                env.store, env.clock, env.entropy.fork("api-keys"), cache=key_cache
            ),
        )


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]

"""AgentState as clients see it: relationships filled only when `include` asks for them
(Letta 1.0 semantics: the rest are empty lists), secrets only with `agent.secrets`."""

from collections.abc import Collection

from kelpie.schemas import AgentState, Block, Memory, Tool


def with_relationships(
    agent: AgentState,
    include: Collection[str],
    *,
    tags: list[str],
    blocks: list[Block],
    tools: list[Tool],
) -> AgentState:
    """Fills `agent` in place (it was just read or built for this response) and returns it."""
    if not include and not tags and not blocks and not tools:
        # As parsed from the store: relationships are already empty; only hide secrets.
        if agent.secrets:
            agent.secrets = []
        return agent
    secrets = agent.secrets if "agent.secrets" in include else []
    agent.secrets = secrets
    agent.tool_exec_environment_variables = secrets
    agent.tags = tags
    agent.blocks = blocks
    agent.tools = tools
    agent.memory = Memory(blocks=blocks, agent_type=agent.agent_type)
    return agent


def without_relationships(agents: list[AgentState]) -> list[AgentState]:
    for agent in agents:
        with_relationships(agent, (), tags=[], blocks=[], tools=[])
    return agents

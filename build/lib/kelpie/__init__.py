"""Kelpie: a runtime for stateful AI agents that speaks the Letta REST API.

Layers, top to bottom (a layer imports only the layers below it; import-linter checks this):

    cli | sim   entry points: the real server, the deterministic simulator
    api         HTTP: routers, Letta-shaped request parsing, error mapping
    service     use cases: resolves ids, validates references, one transaction per write
    runtime     virtual actors: one activation per agent, turn locks, deactivation
    agent       the agent loop, tool rules, the system prompt compiler
    tools       tool schemas from Python source; the runners that execute every tool call
    sandbox     the process sandbox custom tools run in (its worker imports nothing of Kelpie)
    mcp         the MCP client: kept connections to MCP servers (imports nothing of Kelpie)
    llm         model providers and the catalogue of configured models
    memory      embedders, hybrid search, the embedding worker
    storage     the Store protocol and its SQLite implementation
    env         the effect seam: clock, entropy (randomness and ids), config, and the Env bundle
    schemas     Letta-shaped data models and id types shared by every layer
"""

__version__ = "0.1.0"

"""Kelpie: a runtime for stateful AI agents that speaks the Letta REST API.

Layers, top to bottom (a layer imports only the layers below it; import-linter checks this):

    cli | sim   entry points: the real server, the deterministic simulator
    api         HTTP: routers, Letta-shaped request parsing, error mapping
    service     use cases: resolves ids, validates references, one transaction per write
    tools       tool schemas from Python source, the built-in tool set
    llm         model providers and the catalogue of configured models
    storage     the Store protocol and its SQLite implementation
    env         the effect seam: clock, entropy (randomness and ids), config, and the Env bundle
    schemas     Letta-shaped data models and id types shared by every layer
"""

__version__ = "0.1.0"

"""The bundle of effects handed to every layer that has them."""

import dataclasses
from typing import TYPE_CHECKING, final

from kelpie.env._clock import Clock
from kelpie.env._config import Config
from kelpie.env._entropy import Entropy
from kelpie.obs import Metrics, Tracing

if TYPE_CHECKING:
    # Type-only: the seams' protocols live in the layers that own them.
    from kelpie.llm import LlmProviders, ModelCatalog
    from kelpie.mcp import McpClients
    from kelpie.memory import Embedder
    from kelpie.sandbox import Sandbox
    from kelpie.storage import Store
    from kelpie.web import Web


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class Env:
    clock: Clock
    entropy: Entropy
    config: Config
    store: "Store"
    models: "ModelCatalog"
    llm: "LlmProviders"
    embedder: "Embedder"
    sandbox: "Sandbox"
    mcp: "McpClients"
    web: "Web"
    # Observation only: recording never changes what the server does.
    metrics: Metrics = dataclasses.field(default_factory=Metrics)
    # Off unless configured (the simulator never turns it on: the exporter has a thread).
    tracing: Tracing = dataclasses.field(default_factory=Tracing)

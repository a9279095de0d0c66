"""The Store protocol: intention-revealing operations, each one transaction.

Implementations: `SqliteStore` (the embedded default) and `PostgresStore` (the server
tier). Writes are atomic; a method that returns has committed. Reads return the last
committed state. Agents are written as `AgentConfig` (relationships live in their own
tables) and read as `AgentState` with the relationships empty, for the service to fill as
`include` asks.
"""

from typing import Protocol

from kelpie.storage._roles import (
    AgentsAndBlocks,
    ApiKeys,
    Archives,
    Conversations,
    McpServers,
    MessagesAndRuns,
    Search,
    WorkingMemory,
)


class Store(
    AgentsAndBlocks,
    MessagesAndRuns,
    Conversations,
    Archives,
    Search,
    McpServers,
    WorkingMemory,
    ApiKeys,
    Protocol,
):
    """Everything a backend stores: the roles of kelpie.storage._roles, each a protocol
    of its own, which the conformance suite checks on every backend."""

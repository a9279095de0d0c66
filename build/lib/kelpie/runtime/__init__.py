"""Virtual actors: every agent is activated on demand, kept while in use, and put away
when idle or when the active set is full (least recently used first). One activation per
agent; turns on the same conversation are serialised (a concurrent send is refused with
Letta's 409). Imports the agent layer and below.
"""

from kelpie.runtime._actors import (
    ACTIVE_AGENTS_MAX_DEFAULT,
    IDLE_TIMEOUT_S_DEFAULT,
    MAILBOX_DEPTH_MAX,
    Activation,
    AgentRuntime,
    ConversationBusy,
    MailboxFull,
)

__all__ = [
    "ACTIVE_AGENTS_MAX_DEFAULT",
    "IDLE_TIMEOUT_S_DEFAULT",
    "MAILBOX_DEPTH_MAX",
    "Activation",
    "AgentRuntime",
    "ConversationBusy",
    "MailboxFull",
]

"""Storage failures, translated from the driver's exceptions at the store's edge."""

from kelpie.errors import Conflict, Unavailable


class StorageUnavailable(Unavailable):
    """The database failed (I/O, locked, full, injected fault). Retrying may succeed."""


class StorageConflict(Conflict):
    """A write broke a uniqueness rule."""


class WorkingMemoryFull(Conflict):
    """A new working-memory key would pass the agent's key limit."""

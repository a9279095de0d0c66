"""uvicorn's server, made to let Kelpie close its effects before a signal ends the process.

uvicorn re-raises the SIGTERM or SIGINT that stopped it as soon as `serve()` returns, and
the default action ends the process there: the sandbox (which pauses agents' code sessions
to disk), the MCP servers and the store would never be closed. This server holds the
signals; `reraise_signals` delivers them once everything is closed."""

import contextlib
import signal
from collections.abc import Iterator

import uvicorn


class ClosingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.held_signals: list[int] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn's own list, re-raised when its context exits: hold them instead.
            self.held_signals = list(self._captured_signals)
            self._captured_signals.clear()

    def reraise_signals(self) -> None:
        """Ends the process as the signals that stopped the server would have."""
        for held in reversed(self.held_signals):
            signal.raise_signal(held)

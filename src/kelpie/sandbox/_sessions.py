"""Code sessions and the interpreter tier, when they cannot or may not run: every execution
is refused with the reason, so callers fall back to one-shot executions (which keep no
state)."""

from kelpie.sandbox._types import HostCalls, ToolJob, ToolJobResult


class SessionsOff:
    def __init__(self, reason: str) -> None:
        self._reason = reason

    @property
    def unavailable_reason(self) -> str | None:
        return self._reason

    async def start(self) -> None:
        return None

    async def run(
        self, agent_id: str, job: ToolJob, calls: HostCalls | None = None
    ) -> ToolJobResult:
        return ToolJobResult(status="error", error=f"Code sessions are off: {self._reason}")

    async def pause_idle(self, idle_s: float) -> int:
        return 0

    async def discard(self, agent_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


class InterpreterOff:
    """The interpreter tier where it is turned off or cannot run."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    @property
    def unavailable_reason(self) -> str | None:
        return self._reason

    async def start(self) -> None:
        return None

    async def run(self, job: ToolJob, calls: HostCalls | None = None) -> ToolJobResult:
        return ToolJobResult(status="error", error=f"The interpreter is off: {self._reason}")

    async def close(self) -> None:
        return None

"""What a tool runner hands back: the return value the model sees, and what the call
printed (sandboxed tools only)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ToolReturn:
    returned: str | None
    ok: bool = True
    stdout: list[str] | None = None
    stderr: list[str] | None = None

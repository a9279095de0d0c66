"""What a tool runner hands back: the return value the model sees, and what the call
printed (sandboxed tools only)."""

import dataclasses
from typing import Any

from kelpie.schemas import CodePause


@dataclasses.dataclass(frozen=True)
class ToolReturn:
    returned: str | None
    ok: bool = True
    stdout: list[str] | None = None
    stderr: list[str] | None = None
    # The tool's value itself when it has one beyond the text (a custom tool's JSON
    # return), for code that calls the tool; None: the text is the value.
    value: Any = None
    # Code stopped at a call that waits for approval: no return yet (see CodePause).
    paused: CodePause | None = None

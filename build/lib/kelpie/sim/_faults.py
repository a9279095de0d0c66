"""The fault plan of a run: which faults may strike and how often, drawn from the seed or
given on the command line, and printed with the seed so a failure can be read and replayed.
"""

import dataclasses
from collections.abc import Mapping
from typing import Final, final

from kelpie.env import Entropy

# Per-call probabilities a drawn plan picks from for each fault kind.
_PROBABILITY_CHOICES: Final = (0.0, 0.0, 0.01, 0.03, 0.08)
_CRASH_PROBABILITY_CHOICES: Final = (0.0, 0.005, 0.01, 0.02)
STORAGE_LATENCY_S_MAX: Final = 0.25
CLOCK_JUMP_S_MAX: Final = 3600.0
# A slow sandbox start waits up to this long (virtual time) before the tool runs.
SANDBOX_SLOW_START_S_MAX: Final = 0.3
SANDBOX_FAULTS: Final = ("sandbox_crash", "sandbox_timeout", "sandbox_slow_start")
# MCP faults: drawn per call (crash, timeout) and per connect (slow start). A slow start
# takes up to this many connect timeouts: past one, the connect fails.
MCP_SLOW_START_TIMEOUTS_MAX: Final = 1.5
MCP_CALL_FAULTS: Final = ("mcp_crash", "mcp_timeout")
MCP_FAULTS: Final = (*MCP_CALL_FAULTS, "mcp_slow_start")


@final
@dataclasses.dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """Probabilities per eligible call (storage faults, model calls, sandbox runs, MCP calls
    and connects) or per workload step (clock)."""

    storage_write_failure: float = 0.0
    storage_read_failure: float = 0.0
    storage_latency: float = 0.0
    # A process crash at a store write: before the commit (the write is lost) or after it
    # (the write landed, the client never heard).
    crash: float = 0.0
    clock_jump: float = 0.0
    llm_timeout: float = 0.0
    llm_error: float = 0.0
    llm_rate_limit: float = 0.0
    llm_malformed: float = 0.0
    llm_empty: float = 0.0
    # Per custom-tool run in the sandbox: the worker is killed (signal 9) mid-call, the
    # call runs into its timeout, or the worker starts slowly (a delay, then it runs).
    sandbox_crash: float = 0.0
    sandbox_timeout: float = 0.0
    sandbox_slow_start: float = 0.0
    # Per MCP tool call: the server dies mid-call (the next call reconnects), or the call
    # stalls past its timeout; per connect to an MCP server: it starts slowly, maybe past
    # the connect timeout.
    mcp_crash: float = 0.0
    mcp_timeout: float = 0.0
    mcp_slow_start: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            assert 0.0 <= value <= 1.0, f"fault probability {field.name}={value} out of [0, 1]"

    @classmethod
    def none(cls) -> "FaultPlan":
        return cls()

    @classmethod
    def draw(cls, entropy: Entropy) -> "FaultPlan":
        """A random plan: each kind on or off, and how often, decided by the seed."""

        def pick(choices: tuple[float, ...]) -> float:
            return choices[entropy.choice_index(len(choices))]

        return cls(
            storage_write_failure=pick(_PROBABILITY_CHOICES),
            storage_read_failure=pick(_PROBABILITY_CHOICES),
            storage_latency=pick(_PROBABILITY_CHOICES),
            crash=pick(_CRASH_PROBABILITY_CHOICES),
            clock_jump=pick(_PROBABILITY_CHOICES),
            llm_timeout=pick(_PROBABILITY_CHOICES),
            llm_error=pick(_PROBABILITY_CHOICES),
            llm_rate_limit=pick(_PROBABILITY_CHOICES),
            llm_malformed=pick(_PROBABILITY_CHOICES),
            llm_empty=pick(_PROBABILITY_CHOICES),
            # Drawn last: the kinds above keep the values they had before these existed.
            sandbox_crash=pick(_PROBABILITY_CHOICES),
            sandbox_timeout=pick(_PROBABILITY_CHOICES),
            sandbox_slow_start=pick(_PROBABILITY_CHOICES),
            mcp_crash=pick(_PROBABILITY_CHOICES),
            mcp_timeout=pick(_PROBABILITY_CHOICES),
            mcp_slow_start=pick(_PROBABILITY_CHOICES),
        )

    @classmethod
    def parse(cls, text: str) -> "FaultPlan":
        """`kind=p,kind=p` as on the command line; `none` for a fault-free run."""
        if text.strip() in ("", "none"):
            return cls()
        values: dict[str, float] = {}
        names = {field.name for field in dataclasses.fields(cls)}
        for item in text.split(","):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in names:
                raise ValueError(f"unknown fault '{item}'; kinds: {', '.join(sorted(names))}")
            values[name] = float(value)
        return cls(**values)

    def describe(self) -> str:
        active = {k: v for k, v in dataclasses.asdict(self).items() if v > 0}
        return ", ".join(f"{k}={v:g}" for k, v in active.items()) or "none"

    def as_dict(self) -> Mapping[str, float]:
        return dataclasses.asdict(self)

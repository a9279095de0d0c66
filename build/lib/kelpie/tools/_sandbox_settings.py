"""A custom tool's sandbox settings, a Kelpie extension kept in the tool's `metadata_`
under `sandbox`: `{"timeout_s": 30, "network": true}`. Absent keys take the server's
defaults (KELPIE_TOOL_TIMEOUT_S; no network)."""

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from kelpie.sandbox import TOOL_TIMEOUT_S_MAX

SANDBOX_METADATA_KEY: Final = "sandbox"
_KEYS: Final = frozenset({"timeout_s", "network"})


@dataclasses.dataclass(frozen=True)
class SandboxSettings:
    timeout_s: float | None = None
    network: bool = False


def sandbox_settings(metadata: Mapping[str, Any] | None) -> SandboxSettings | str:
    """The settings, or the text saying what is wrong with them."""
    raw = (metadata or {}).get(SANDBOX_METADATA_KEY)
    if raw is None:
        return SandboxSettings()
    if not isinstance(raw, dict):
        return f"metadata_.{SANDBOX_METADATA_KEY} must be an object with timeout_s and network"
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        return f"metadata_.{SANDBOX_METADATA_KEY} has unknown keys {unknown}: use {sorted(_KEYS)}"
    timeout = raw.get("timeout_s")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= TOOL_TIMEOUT_S_MAX
    ):
        return (
            f"metadata_.{SANDBOX_METADATA_KEY}.timeout_s must be a number of seconds in"
            f" (0, {TOOL_TIMEOUT_S_MAX:g}]"
        )
    network = raw.get("network", False)
    if not isinstance(network, bool):
        return f"metadata_.{SANDBOX_METADATA_KEY}.network must be true or false"
    return SandboxSettings(None if timeout is None else float(timeout), network)

"""LLM fault injection, ready for the LLM seam: before each model call the injector draws
whether it times out, fails, is rate limited, or answers with malformed or empty output.
The provider wrapper raises the error kinds and mangles the output for the others."""

from typing import Final, final

from kelpie.env import Entropy
from kelpie.llm import LlmProviderFailed, LlmRateLimited, LlmTimeout
from kelpie.sim._faults import FaultPlan

LLM_ERROR_FAULTS: Final = ("llm_timeout", "llm_error", "llm_rate_limit")
LLM_OUTPUT_FAULTS: Final = ("llm_malformed", "llm_empty")
MALFORMED_TOOL_ARGUMENTS: Final = '{"unterminated": '


@final
class LlmFaultInjector:
    def __init__(self, plan: FaultPlan, entropy: Entropy) -> None:
        self._plan = plan
        self._entropy = entropy
        self.injected: list[str] = []

    def draw(self) -> str | None:
        """The fault for the next call, or None. At most one fault per call."""
        for kind in (*LLM_ERROR_FAULTS, *LLM_OUTPUT_FAULTS):
            probability = getattr(self._plan, kind)
            if probability and self._entropy.random() < probability:
                self.injected.append(kind)
                return kind
        return None

    def raise_error(self, kind: str) -> None:
        """Raises the provider error a real SDK failure of `kind` is translated to."""
        if kind == "llm_timeout":
            raise LlmTimeout("injected: the model did not answer in time")
        if kind == "llm_rate_limit":
            raise LlmRateLimited("injected: rate limited by the provider (429)")
        if kind == "llm_error":
            raise LlmProviderFailed("injected: the provider answered 500")
        raise AssertionError(f"{kind} is not an error fault")

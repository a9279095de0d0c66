"""LLM failures, translated from the provider SDKs' exceptions at the provider's edge.
The agent loop maps each to a Letta stop reason and error type.

    LlmError                  (Unavailable: retrying may succeed)
    ├── LlmTimeout            the provider did not answer in time        (llm_timeout)
    ├── LlmRateLimited        the provider asked us to slow down (429)   (llm_rate_limit)
    ├── LlmProviderFailed     the provider answered with an error (5xx)  (llm_error)
    └── LlmInvalidResponse    an answer arrived but is unusable:
                              malformed tool call, empty output          (invalid_llm_response)
"""

from kelpie.errors import Unavailable


class LlmError(Unavailable):
    error_type = "llm_error"

    def __init__(
        self, detail: str, *, retryable: bool = True, retry_after_s: float | None = None
    ) -> None:
        super().__init__(detail)
        # False when asking again cannot help: the provider refused the request itself
        # (400, 401, 404), as opposed to failing to answer it (5xx, 429, timeouts).
        self.retryable = retryable
        # How long the provider asked us to wait before asking again (Retry-After), if it said.
        self.retry_after_s = retry_after_s


class LlmTimeout(LlmError):
    error_type = "llm_timeout"


class LlmRateLimited(LlmError):
    error_type = "llm_rate_limit"


class LlmProviderFailed(LlmError):
    error_type = "llm_error"


class LlmInvalidResponse(LlmError):
    error_type = "llm_empty_response"

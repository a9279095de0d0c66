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


class LlmTimeout(LlmError):
    error_type = "llm_timeout"


class LlmRateLimited(LlmError):
    error_type = "llm_rate_limit"


class LlmProviderFailed(LlmError):
    error_type = "llm_error"


class LlmInvalidResponse(LlmError):
    error_type = "llm_empty_response"

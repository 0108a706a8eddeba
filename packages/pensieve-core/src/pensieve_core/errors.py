"""The one error tree. Each error knows its Anthropic error type and HTTP status;
only the server package turns them into HTTP responses.

PensieveError
├── InvalidRequestError        400 invalid_request_error
│   └── PromptTooLongError     400 invalid_request_error ("prompt is too long: N tokens > M maximum")
├── AuthenticationError        401 authentication_error
├── PermissionDeniedError      403 permission_error
├── NotFoundError              404 not_found_error
│   └── ModelNotFoundError     404 not_found_error
├── RequestTooLargeError       413 request_too_large
├── RateLimitError             429 rate_limit_error
├── ApiError                   500 api_error
│   ├── ModelLoadError         500 api_error (weights or tokenizer unusable)
│   └── GenerationError        500 api_error (failure inside the engine)
├── GatewayTimeoutError        504 timeout_error
└── OverloadedError            529 overloaded_error
"""

from __future__ import annotations


class PensieveError(Exception):
    error_type = "api_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(PensieveError):
    error_type = "invalid_request_error"
    status = 400


class PromptTooLongError(InvalidRequestError):
    def __init__(self, prompt_tokens: int, maximum: int) -> None:
        # Claude Code recognises this exact wording and compacts the conversation.
        super().__init__(f"prompt is too long: {prompt_tokens} tokens > {maximum} maximum")
        self.prompt_tokens = prompt_tokens
        self.maximum = maximum


class AuthenticationError(PensieveError):
    error_type = "authentication_error"
    status = 401


class PermissionDeniedError(PensieveError):
    error_type = "permission_error"
    status = 403


class NotFoundError(PensieveError):
    error_type = "not_found_error"
    status = 404


class ModelNotFoundError(NotFoundError):
    pass


class RequestTooLargeError(PensieveError):
    error_type = "request_too_large"
    status = 413


class RateLimitError(PensieveError):
    error_type = "rate_limit_error"
    status = 429


class ApiError(PensieveError):
    error_type = "api_error"
    status = 500


class ModelLoadError(ApiError):
    pass


class GenerationError(ApiError):
    pass


class GatewayTimeoutError(PensieveError):
    error_type = "timeout_error"
    status = 504


class OverloadedError(PensieveError):
    error_type = "overloaded_error"
    status = 529

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ConfigError(PensieveError):
    """Bad configuration: reported by the CLI as one line, never over HTTP."""

    error_type = "invalid_request_error"
    status = 400

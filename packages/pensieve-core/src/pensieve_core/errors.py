"""The one error tree. Each error knows its Anthropic error type and HTTP status;
only the server package turns them into HTTP responses.

PensieveError                  500 api_error (the root; raised only as a subclass)
├── InvalidRequestError        400 invalid_request_error
│   └── PromptTooLongError     400 invalid_request_error ("prompt is too long: N tokens > M maximum")
├── AuthenticationError        401 authentication_error
├── PermissionDeniedError      403 permission_error (Host or Origin not allowed)
├── NotFoundError              404 not_found_error (no such route)
│   ├── ModelNotFoundError     404 not_found_error
│   └── HubUnavailableError    404 not_found_error (at startup: the hub cannot give the model)
├── RequestTooLargeError       413 request_too_large
├── ApiError                   500 api_error (an unhandled failure)
│   ├── ModelLoadError         500 api_error (weights or tokenizer unusable)
│   ├── GenerationError        500 api_error (failure inside the engine)
│   │   └── RankLostError      500 api_error (a rank of a distributed model died, hung or drifted)
│   └── ConfigError            500 api_error (bad configuration: the CLI prints one line)
└── OverloadedError            529 overloaded_error (queue full, or shutting down; SDKs retry)
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


class HubUnavailableError(NotFoundError):
    """The hub could not be reached, or does not have the repository."""


class RequestTooLargeError(PensieveError):
    error_type = "request_too_large"
    status = 413


class ApiError(PensieveError):
    error_type = "api_error"
    status = 500


class ModelLoadError(ApiError):
    pass


class GenerationError(ApiError):
    pass


class RankLostError(GenerationError):
    """A rank of a model sharded across processes is gone: the group cannot serve again."""


class ConfigError(ApiError):
    """Bad configuration, found at startup or by the CLI: a fault of the server, not of a request."""


class OverloadedError(PensieveError):
    error_type = "overloaded_error"
    status = 529

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

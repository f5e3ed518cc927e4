"""Errors the client sees: each carries the HTTP status and the SPEC error code."""

from __future__ import annotations


class ApiError(Exception):
    status: int = 500
    code: str = "api_error"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class NotImplementedApi(ApiError):
    status, code = 400, "api_not_implemented"


class TokenMismatched(ApiError):
    status, code = 400, "token_mismatched"


class InvalidToken(ApiError):
    status, code = 401, "invalid_token"


class TokenExpired(ApiError):
    status, code = 401, "token_expired"


class Disabled(ApiError):
    status, code = 403, "disabled"


class UsedUp(ApiError):
    status, code = 403, "used_up"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NoApi(ApiError):
    status, code = 404, "no_api"


class Conflict(ApiError):
    status, code = 409, "conflict"


class RequestTimeout(ApiError):
    """The request (its body) did not arrive in time."""

    status, code = 408, "bad_request"


class RequestTooLarge(ApiError):
    status, code = 413, "request_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "bad_request"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class UpstreamFailed(ApiError):
    status, code = 500, "api_error"


class ModelUnavailable(ApiError):
    """A model with no usable upstream (no API key set, a key file that cannot be read)."""

    status, code = 500, "api_error"


class Timeout(ApiError):
    status, code = 504, "timeout"

"""What an upstream failure means to our client: a provider's error as one of our API errors."""

from __future__ import annotations

from imagegate.core.errors import ApiError, BadRequest, Forbidden, Timeout, UpstreamFailed
from imagegate.providers.base import (
    ContentBlocked,
    DeadlineExceeded,
    ProviderError,
    UpstreamAuthError,
    UpstreamRejected,
)


def provider_error_to_api(error: ProviderError) -> ApiError:
    if isinstance(error, ContentBlocked):
        return Forbidden(f"content moderation rejected the request: {error.message}")
    if isinstance(error, UpstreamRejected):
        return BadRequest(f"the upstream rejected the request: {error.message}")
    if isinstance(error, DeadlineExceeded):
        return Timeout(f"the image was not ready in time: {error.message}")
    if isinstance(error, UpstreamAuthError):
        return UpstreamFailed(error.message)
    return UpstreamFailed(f"upstream failed: {error.message}")

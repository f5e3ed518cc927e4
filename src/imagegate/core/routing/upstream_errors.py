"""What an upstream failure means to our client: a provider's error as one of our API errors."""

from __future__ import annotations

import math

from imagegate.core.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    Timeout,
    TooManyRequests,
    UpstreamFailed,
)
from imagegate.providers.base import (
    ContentBlocked,
    DeadlineExceeded,
    OutOfFiles,
    ProviderError,
    QuotaExhausted,
    UpstreamAuthError,
    UpstreamCoolingDown,
    UpstreamMisconfigured,
    UpstreamRejected,
)
from imagegate.providers.http import Scrubber

# Providers scrub what upstreams wrote; this second pass catches any URL or token-shaped
# text in a message a provider built, so none can reach a client or a task record.
_scrub = Scrubber(None, "")


def provider_error_to_api(error: ProviderError) -> ApiError:
    message = _scrub(error.message)
    if isinstance(error, ContentBlocked):
        return Forbidden(f"content moderation rejected the request: {message}")
    if isinstance(error, UpstreamRejected):
        return BadRequest(f"the upstream rejected the request: {message}")
    if isinstance(error, DeadlineExceeded):
        return Timeout(f"the image was not ready in time: {message}")
    if isinstance(error, OutOfFiles):  # this node is full, not broken: come back shortly
        return TooManyRequests(f"this gateway node is at its limit of open connections: "
                               f"{message}", headers={"Retry-After": "1"})
    if isinstance(error, UpstreamCoolingDown):
        seconds = max(1, math.ceil(error.retry_after or 1))
        return UpstreamFailed(message, headers={"Retry-After": str(seconds)})
    if isinstance(error, UpstreamAuthError | UpstreamMisconfigured | QuotaExhausted):
        return UpstreamFailed(message)
    return UpstreamFailed(f"upstream failed: {message}")

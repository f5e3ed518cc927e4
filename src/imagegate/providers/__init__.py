"""Upstream providers: one module per upstream, each turning an ImageRequest into images."""

from imagegate.providers.base import (
    ContentBlocked,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    Provider,
    ProviderError,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)

__all__ = [
    "ContentBlocked", "GeneratedImage", "ImageRequest", "ImageResult", "Provider",
    "ProviderError", "UpstreamAuthError", "UpstreamRejected", "UpstreamUnavailable",
]

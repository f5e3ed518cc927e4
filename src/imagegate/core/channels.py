"""Choosing an upstream channel for a request, and building the providers behind them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from imagegate.core.registry import ChannelConfig, ModelConfig, Registry, UpstreamConfig
from imagegate.providers.base import ImageRequest, ImageResult, Provider, ProviderError
from imagegate.providers.sandbox import SandboxProvider


def build_provider(name: str, config: UpstreamConfig, *, sandbox_latency: float = 0.0,
                   environ: Mapping[str, str] | None = None) -> Provider:
    if config.type == "sandbox":
        return SandboxProvider(latency=sandbox_latency)
    raise ValueError(f"upstream {name!r}: provider type {config.type!r} is not available")


def for_channel(request: ImageRequest, channel: ChannelConfig) -> ImageRequest:
    options = {"send": channel.send, "map": channel.map, "image_size": channel.image_size}
    return dataclasses.replace(request, upstream_model=channel.model, options=options)


class ChannelRouter:
    """Tries a model's channels in priority order until one produces images."""

    def __init__(self, registry: Registry, providers: Mapping[str, Provider]) -> None:
        self.registry = registry
        self.providers = providers

    def ordered(self, model: ModelConfig) -> list[ChannelConfig]:
        return sorted(model.channels, key=lambda c: (c.priority, -c.weight))

    async def generate(self, model: ModelConfig, request: ImageRequest) -> ImageResult:
        last: ProviderError | None = None
        for channel in self.ordered(model):
            provider = self.providers[channel.upstream]
            try:
                return await provider.generate(for_channel(request, channel))
            except ProviderError as e:
                if not e.retryable:
                    raise
                last = e
        assert last is not None
        raise last

"""Choosing an upstream channel for a request: priority, weight, retries, failover, cooldown.

Per request the router walks the model's channels by priority (a weighted shuffle among
equals), retries a channel on transient failures with exponential backoff and jitter that
honours Retry-After, then fails over. A channel that keeps failing is cooled down (skipped)
for a while and then let through one trial request. The whole walk is bounded by the
model's timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from imagegate.core import metrics
from imagegate.core.registry import ChannelConfig, ModelConfig, Registry, UpstreamConfig
from imagegate.providers.base import (
    DeadlineExceeded,
    ImageRequest,
    ImageResult,
    Provider,
    ProviderError,
    UpstreamAuthError,
)
from imagegate.providers.sandbox import SandboxProvider

log = structlog.get_logger("imagegate.channels")
AttemptHook = Callable[[str, str, float], None]  # channel, outcome, seconds


def build_provider(name: str, config: UpstreamConfig, *, sandbox_latency: float = 0.0,
                   environ: Mapping[str, str] | None = None) -> Provider:
    if config.type == "sandbox":
        return SandboxProvider(latency=sandbox_latency)
    if config.type == "openai":
        from imagegate.providers.openai import OpenAIProvider

        return OpenAIProvider(name, config, environ)
    from imagegate.providers.gemini import GeminiProvider

    return GeminiProvider(name, config, environ)


def for_channel(request: ImageRequest, channel: ChannelConfig) -> ImageRequest:
    options = {"send": channel.send, "map": channel.map, "image_size": channel.image_size}
    return dataclasses.replace(request, upstream_model=channel.model, options=options)


def channel_name(channel: ChannelConfig) -> str:
    return f"{channel.upstream}/{channel.model}"


@dataclass
class Breaker:
    """Consecutive failures of one channel; open (skipped) until ``open_until``."""

    failures: int = 0
    open_until: float = 0.0
    last_failure: float = 0.0

    def is_open(self, now: float) -> bool:
        return self.open_until > now


class ChannelRouter:
    def __init__(self, registry: Registry, providers: Mapping[str, Provider], *,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0,
                 failure_threshold: int = 5, cooldown: float = 30.0,
                 on_attempt: AttemptHook | None = None, rng: random.Random | None = None
                 ) -> None:
        self.registry = registry
        self.providers = providers
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.on_attempt = on_attempt
        self.rng = rng or random.Random()
        self.breakers: dict[str, Breaker] = {}

    def ordered(self, model: ModelConfig) -> list[ChannelConfig]:
        """By priority; a weighted random order among channels of equal priority."""
        out: list[ChannelConfig] = []
        for priority in sorted({c.priority for c in model.channels}):
            group = [c for c in model.channels if c.priority == priority]
            # weighted shuffle: sort by u^(1/w), the Efraimidis-Spirakis key
            out += sorted(group, key=lambda c: -self.rng.random() ** (1 / c.weight))
        now = time.monotonic()
        closed = [c for c in out if not self._breaker(c).is_open(now)]
        if closed:
            return closed
        # everything is cooling down: try the one that failed longest ago
        return [min(out, key=lambda c: self._breaker(c).last_failure)]

    def _breaker(self, channel: ChannelConfig) -> Breaker:
        return self.breakers.setdefault(channel_name(channel), Breaker())

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_cap, self.backoff_base * 2 ** attempt)
        delay = self.rng.uniform(delay / 2, delay)  # jitter, so retries do not stampede
        return max(delay, retry_after or 0.0)

    async def generate(self, model: ModelConfig, request: ImageRequest) -> ImageResult:
        deadline = time.monotonic() + model.timeout
        try:
            async with asyncio.timeout(model.timeout):
                return await self._walk(model, request, deadline)
        except TimeoutError:
            raise DeadlineExceeded(
                f"{model.name} took longer than its {model.timeout:g}s limit") from None

    async def _walk(self, model: ModelConfig, request: ImageRequest, deadline: float
                    ) -> ImageResult:
        last: ProviderError | None = None
        for index, channel in enumerate(self.ordered(model)):
            if index:
                metrics.failovers_total.labels(model.name).inc()
                log.warning("failover", model=model.name, to=channel_name(channel))
            provider = self.providers[channel.upstream]
            routed = for_channel(request, channel)
            for attempt in range(channel.max_retries + 1):
                try:
                    result = await self._attempt(provider, channel, routed)
                    return dataclasses.replace(result, upstream=channel_name(channel))
                except ProviderError as e:
                    last = e
                    if not e.retryable or isinstance(e, UpstreamAuthError):
                        if isinstance(e, UpstreamAuthError):
                            break  # this channel's key is wrong: the next one may work
                        raise
                    if attempt == channel.max_retries:
                        break
                    wait = self.backoff(attempt, e.retry_after)
                    if time.monotonic() + wait >= deadline:
                        raise DeadlineExceeded(
                            f"{model.name} would pass its {model.timeout:g}s limit while "
                            f"waiting to retry ({e.message})") from None
                    metrics.retries_total.labels(channel_name(channel)).inc()
                    log.info("retry", channel=channel_name(channel), attempt=attempt + 1,
                             wait=round(wait, 3), reason=e.message)
                    await asyncio.sleep(wait)
        assert last is not None
        raise last

    async def _attempt(self, provider: Provider, channel: ChannelConfig,
                       request: ImageRequest) -> ImageResult:
        name = channel_name(channel)
        breaker = self._breaker(channel)
        started = time.monotonic()
        try:
            result = await provider.generate(request)
        except ProviderError as e:
            outcome = type(e).__name__
            if e.retryable or isinstance(e, UpstreamAuthError):
                breaker.failures += 1
                breaker.last_failure = time.monotonic()
                if breaker.failures >= self.failure_threshold:
                    breaker.open_until = time.monotonic() + self.cooldown
                    log.warning("channel_cooling_down", channel=name, seconds=self.cooldown)
            self._observe(channel, outcome, started)
            raise
        breaker.failures, breaker.open_until = 0, 0.0
        self._observe(channel, "ok", started)
        return result

    def _observe(self, channel: ChannelConfig, outcome: str, started: float) -> None:
        seconds = time.monotonic() - started
        provider = self.registry.upstreams[channel.upstream].type
        metrics.upstream_calls.labels(provider, channel_name(channel), outcome).inc()
        metrics.upstream_seconds.labels(provider).observe(seconds)
        if self.on_attempt is not None:
            self.on_attempt(channel_name(channel), outcome, seconds)

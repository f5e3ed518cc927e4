"""Choosing an upstream channel for a request: priority, weight, retries, failover, cooldown.

Per request the router walks the model's channels by priority (a weighted shuffle among
equals), retries a channel on transient failures with exponential backoff and jitter that
honours Retry-After, then fails over. A channel whose upstream makes one image per call
(``fan_out``) gets ``n`` one-image calls at once, each with its own retries; the images
already made are kept, and only the missing ones are asked of the next channel. A wait
that would pass the model's time budget is not waited: the next channel is tried instead.
A channel that keeps failing is cooled down (skipped) for a while, then half-open: exactly
one trial request goes through, and its outcome closes or re-opens the breaker. When every
channel is cooling down the request fails at once rather than adding load to a sick
upstream. The whole walk is bounded by the model's timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from imagegate.core import metrics
from imagegate.core.routing.registry import ChannelConfig, ModelConfig, Registry, UpstreamConfig
from imagegate.providers.base import (
    DeadlineExceeded,
    EditRequest,
    ImageRequest,
    ImageResult,
    Provider,
    ProviderError,
    UpstreamCoolingDown,
    UpstreamRejected,
)
from imagegate.providers.sandbox import SandboxProvider

log = structlog.get_logger("imagegate.channels")
AttemptHook = Callable[[str, str, float], None]  # channel, outcome, seconds


# upstream type -> "module:class" of its provider, imported when a registry uses it
PROVIDERS = {
    "openai": "imagegate.providers.openai:OpenAIProvider",
    "gemini": "imagegate.providers.gemini:GeminiProvider",
    "azure": "imagegate.providers.azure:AzureOpenAIProvider",
    "vertex": "imagegate.providers.vertex:VertexProvider",
    "openrouter": "imagegate.providers.openrouter:OpenRouterProvider",
}
# families whose upstream models make one image per call, whoever relays them (Gemini's
# image models refuse candidateCount > 1: "Multiple candidates is not enabled")
ONE_PER_CALL_FAMILIES = frozenset({"nano-banana"})


def build_provider(name: str, config: UpstreamConfig, *, sandbox_latency: float = 0.0,
                   environ: Mapping[str, str] | None = None) -> Provider:
    if config.type == "sandbox":
        return SandboxProvider(latency=sandbox_latency)
    module, _, cls = PROVIDERS[config.type].partition(":")
    provider: Provider = getattr(importlib.import_module(module), cls)(name, config, environ)
    return provider


def for_channel(request: ImageRequest, channel: ChannelConfig) -> ImageRequest:
    options = {"send": channel.send, "map": channel.map, "image_size": channel.image_size}
    return dataclasses.replace(request, upstream_model=channel.model, options=options)


def channel_name(channel: ChannelConfig) -> str:
    return f"{channel.upstream}/{channel.model}"


@dataclass
class Breaker:
    """One channel's health: closed (``open_until`` 0), open until ``open_until``, then
    half-open, when the first request to come along takes the single ``trial``."""

    failures: int = 0
    open_until: float = 0.0
    trial: bool = False

    def admit(self, now: float) -> bool:
        """May a request use the channel now? Takes the half-open trial when it is free."""
        if not self.open_until:
            return True
        if now < self.open_until or self.trial:
            return False
        self.trial = True
        return True

    def wait(self, now: float) -> float:
        """Seconds until the channel takes a request again (a running trial: soon)."""
        return max(self.open_until - now, 1.0)


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
        """By priority; a weighted random order among channels of equal priority.

        Breakers are consulted as the walk reaches each channel, not here: by then an
        earlier channel may have spent minutes, and a trial slot must not be held meanwhile.
        """
        out: list[ChannelConfig] = []
        for priority in sorted({c.priority for c in model.channels}):
            group = [c for c in model.channels if c.priority == priority]
            # weighted shuffle: sort by u^(1/w), the Efraimidis-Spirakis key
            out += sorted(group, key=lambda c: -self.rng.random() ** (1 / c.weight))
        return out

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

    async def edit(self, model: ModelConfig, request: EditRequest) -> ImageResult:
        """Edits walk the same channels, retries and breakers; each provider's ``edit``
        answers them."""
        return await self.generate(model, request)

    def fans_out(self, channel: ChannelConfig, family: str | None = None) -> bool:
        """Whether ``n`` images are ``n`` calls on this channel: the channel's ``fan_out``,
        else its upstream's, else one call per image for a family whose models make one
        (nano-banana, even behind an OpenAI-compatible relay), else what the provider
        says it can do."""
        if channel.fan_out is not None:
            return channel.fan_out
        upstream = self.registry.upstreams.get(channel.upstream)
        if upstream is not None and upstream.fan_out is not None:
            return upstream.fan_out
        if family in ONE_PER_CALL_FAMILIES:
            return True
        return not getattr(self.providers[channel.upstream], "several_per_call", True)

    async def _walk(self, model: ModelConfig, request: ImageRequest, deadline: float
                    ) -> ImageResult:
        kept: list[ImageResult] = []  # made already (and paid for upstream): never asked again
        last: ProviderError | None = None
        cooling: list[float] = []
        for channel, breaker, trial in self.admitted(model, request, cooling):
            if last is not None:
                metrics.failovers_total.labels(model.name).inc()
                log.warning("failover", model=model.name, to=channel_name(channel),
                            images_kept=sum(len(r.images) for r in kept))
            try:
                await self._fill(model, channel, request, deadline, kept)
                return merged(kept, request.n)
            except ProviderError as e:
                if not e.failover:
                    raise
                last = e
            finally:
                if trial:
                    breaker.trial = False
        raise last if last is not None else nothing_left(model, cooling)

    def admitted(self, model: ModelConfig, request: ImageRequest, cooling: list[float]
                 ) -> Iterator[tuple[ChannelConfig, Breaker, bool]]:
        """The model's channels in order, each when its turn comes: those that take the
        request and that their breaker lets through now, with whether this request is the
        breaker's half-open trial (the caller ends the trial); a channel cooling down adds
        its wait to ``cooling``. Calls and streams walk the channels alike through this."""
        for channel in self.ordered(model):
            if refuses(channel, request):
                continue  # validation saw another channel that takes it
            breaker = self._breaker(channel)
            now, held = time.monotonic(), breaker.trial
            if not breaker.admit(now):
                cooling.append(breaker.wait(now))
                continue
            yield channel, breaker, breaker.trial and not held

    async def _fill(self, model: ModelConfig, channel: ChannelConfig, request: ImageRequest,
                    deadline: float, kept: list[ImageResult]) -> None:
        """Add the images still missing from ``kept`` from one channel; raises the first
        failure once every call has ended (those that succeeded stay in ``kept``)."""
        wanted = request.n - sum(len(r.images) for r in kept)
        if wanted <= 1 or not self.fans_out(channel, request.family):
            if wanted != request.n:  # a copy of a frozen request is not free: only if needed
                request = dataclasses.replace(request, n=wanted)
            kept.append(await self._channel(model, channel, request, deadline))
            return
        one = dataclasses.replace(request, n=1)
        calls = [asyncio.ensure_future(self._channel(model, channel, one, deadline))
                 for _ in range(wanted)]
        failed: ProviderError | None = None
        try:
            for call in asyncio.as_completed(calls):
                try:
                    kept.append(await call)
                except ProviderError as e:
                    if not e.failover:
                        raise  # the request fails: the other calls are stopped below
                    failed = failed or e
        finally:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        if failed is not None:
            raise failed

    async def _channel(self, model: ModelConfig, channel: ChannelConfig, request: ImageRequest,
                       deadline: float) -> ImageResult:
        """One channel with its retries; raises the last error when the channel gives up."""
        provider = self.providers[channel.upstream]
        routed = for_channel(request, channel)
        breaker = self._breaker(channel)
        attempt = 0
        while True:
            try:
                result = await self._attempt(provider, channel, routed)
                return dataclasses.replace(result, upstream=channel_name(channel))
            except ProviderError as e:
                if not e.retryable or attempt >= retries(channel, e) or breaker.open_until:
                    raise  # retries used up, or the breaker just opened: next channel
                wait = self.backoff(attempt, e.retry_after)
                if time.monotonic() + wait >= deadline:
                    e.message = (f"{e.message} (a retry {wait:.1f}s later would pass the "
                                 f"{model.timeout:g}s limit of {model.name})")
                    raise
                await self.pause(channel, attempt, e, wait)
                if breaker.open_until:
                    raise  # other requests cooled the channel down while we waited
                attempt += 1

    @staticmethod
    async def pause(channel: ChannelConfig, attempt: int, error: ProviderError, wait: float,
                    **also: object) -> None:
        """Count, log and wait out the backoff before a retry (of a call or a stream)."""
        metrics.retries_total.labels(channel_name(channel)).inc()
        log.info("retry", channel=channel_name(channel), attempt=attempt + 1,
                 wait=round(wait, 3), reason=error.message, **also)
        await asyncio.sleep(wait)

    async def _attempt(self, provider: Provider, channel: ChannelConfig,
                       request: ImageRequest) -> ImageResult:
        started = time.monotonic()
        try:
            result = await (provider.edit(request) if isinstance(request, EditRequest)
                            else provider.generate(request))
        except ProviderError as e:
            self.failed(channel, e, started)
            raise
        self.succeeded(channel, started)
        return result

    def failed(self, channel: ChannelConfig, error: ProviderError, started: float) -> None:
        """The breaker's account of a failed call (or stream) begun at ``started``."""
        self._observe(channel, type(error).__name__, started)
        if error.local:
            return
        breaker = self._breaker(channel)
        if not error.channel_fault:  # a refusal: the upstream is answering, so it is healthy
            breaker.failures, breaker.open_until = 0, 0.0
            return
        breaker.failures += 1
        if breaker.open_until or breaker.failures >= self.failure_threshold:
            # a failed half-open trial re-opens at once; a closed breaker at the threshold
            breaker.open_until = time.monotonic() + self.cooldown
            log.warning("channel_cooling_down", channel=channel_name(channel),
                        seconds=self.cooldown, reason=error.message)

    def succeeded(self, channel: ChannelConfig, started: float) -> None:
        breaker = self._breaker(channel)
        breaker.failures, breaker.open_until = 0, 0.0
        self._observe(channel, "ok", started)

    def _observe(self, channel: ChannelConfig, outcome: str, started: float) -> None:
        seconds = time.monotonic() - started
        provider = self.registry.upstreams[channel.upstream].type
        metrics.child(metrics.upstream_calls, provider, channel_name(channel), outcome).inc()
        metrics.child(metrics.upstream_seconds, provider).observe(seconds)
        if self.on_attempt is not None:
            self.on_attempt(channel_name(channel), outcome, seconds)


def retries(channel: ChannelConfig, error: ProviderError) -> int:
    """How often ``channel`` retries this kind of failure."""
    if error.retry_limit is None:
        return channel.max_retries
    return min(channel.max_retries, error.retry_limit)


def refuses(channel: ChannelConfig, request: ImageRequest) -> bool:
    """The channel declares a value of this request one its upstream refuses."""
    values = {f: getattr(request, f, None) for f in channel.unsupported}
    return channel.refuses(values) is not None


def nothing_left(model: ModelConfig, cooling: list[float]) -> ProviderError:
    """Every channel of ``model`` was skipped: ``cooling`` holds how long each cooling one
    still waits; the others refuse a value of the request."""
    if not cooling:  # every channel refuses a value (a registry changed since intake)
        return UpstreamRejected(f"no channel of {model.name} accepts this request's values")
    seconds = math.ceil(min(cooling))
    return UpstreamCoolingDown(
        f"the upstream of {model.name} is cooling down after repeated failures; it takes "
        f"requests again in about {seconds} s", retry_after=seconds)


def merged(results: list[ImageResult], n: int) -> ImageResult:
    """One result from the calls that made a request's images: usage summed, channels named."""
    if len(results) == 1 and len(results[0].images) <= n:
        return results[0]
    usage: dict[str, Any] = {}
    for result in results:
        _add_usage(usage, result.usage or {})
    names = list(dict.fromkeys(r.upstream for r in results if r.upstream))
    return ImageResult(images=[img for r in results for img in r.images][:n],
                       usage=usage or None, upstream=",".join(names)[:200] or None,
                       meta=next((r.meta for r in results if r.meta), None))


def total_usage(usages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several calls' (or a stream's images') usage as one."""
    total: dict[str, Any] = {}
    for usage in usages:
        _add_usage(total, usage)
    return total or None


def _add_usage(total: dict[str, Any], usage: Mapping[str, Any]) -> None:
    """Token counts add up, nested ones too (OpenAI's ``input_tokens_details``)."""
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, Mapping):
            inner = total.setdefault(key, {})
            if isinstance(inner, dict):
                _add_usage(inner, value)

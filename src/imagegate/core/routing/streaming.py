"""Choosing a channel for a stream: the channel router's order, breakers and retries, up to
the first event.

Once an event has gone to the client, the stream is committed to its channel: a failure
after that ends the stream (the client saw partial images of that upstream's picture), so
retries and failover happen only before anything was sent. A channel that makes one image
per call gets ``n`` streams at once, their events merged as they arrive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import structlog

from imagegate.core import metrics
from imagegate.core.routing.channels import (
    ChannelRouter,
    channel_name,
    for_channel,
    nothing_left,
    retries,
)
from imagegate.core.routing.registry import ChannelConfig, ModelConfig
from imagegate.providers.base import (
    EditRequest,
    ImageRequest,
    Provider,
    ProviderError,
)
from imagegate.providers.streaming import FinalImage, StreamEvent

log = structlog.get_logger("imagegate.channels")
_DONE = object()


async def stream_channels(router: ChannelRouter, model: ModelConfig, request: ImageRequest
                          ) -> AsyncIterator[tuple[str, StreamEvent]]:
    """Each event with the channel that sent it. The model's time limit is the caller's."""
    last: ProviderError | None = None
    cooling: list[float] = []
    for channel, breaker, trial in router.admitted(model, request, cooling):
        if last is not None:
            metrics.failovers_total.labels(model.name).inc()
            log.warning("failover", model=model.name, to=channel_name(channel), stream=True)
        sent = False
        try:
            attempt = 0
            while True:
                started = time.monotonic()
                try:
                    async for event in _events(router, channel, request):
                        sent = True
                        yield channel_name(channel), event
                except ProviderError as e:
                    router.failed(channel, e, started)
                    if (sent or not e.retryable or attempt >= retries(channel, e)
                            or breaker.open_until):
                        raise
                    await router.pause(channel, attempt, e,
                                       router.backoff(attempt, e.retry_after), stream=True)
                    attempt += 1
                    continue
                router.succeeded(channel, started)
                return
        except ProviderError as e:
            if sent or not e.failover:
                raise
            last = e
        finally:
            if trial:
                breaker.trial = False
    raise last if last is not None else nothing_left(model, cooling)


def _events(router: ChannelRouter, channel: ChannelConfig, request: ImageRequest
            ) -> AsyncIterator[StreamEvent]:
    provider = router.providers[channel.upstream]
    routed = for_channel(request, channel)
    if routed.n > 1 and router.fans_out(channel, request.family):
        return _merged(provider, routed)
    return _one(provider, routed)


def _one(provider: Provider, request: ImageRequest) -> AsyncIterator[StreamEvent]:
    """The provider's stream; an upstream that cannot stream answers whole, as completed
    images only (no partial images to pass on)."""
    if hasattr(provider, "stream"):
        return provider.stream(request)
    return _whole(provider, request)


async def _whole(provider: Provider, request: ImageRequest) -> AsyncIterator[StreamEvent]:
    result = await (provider.edit(request) if isinstance(request, EditRequest)
                    else provider.generate(request))
    for index, image in enumerate(result.images):
        yield FinalImage(index, image, result.usage if index == 0 else None, result.meta)


async def _merged(provider: Provider, request: ImageRequest) -> AsyncIterator[StreamEvent]:
    """``n`` one-image streams at once; image ``i``'s events renumbered to ``i``."""
    one = dataclasses.replace(request, n=1)
    # at most n * (partial_images + 1) events: never full, so no runner waits on it
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def run(index: int) -> None:
        try:
            async for event in _one(provider, one):
                queue.put_nowait(dataclasses.replace(event, index=index))
        except ProviderError as e:
            queue.put_nowait(e)
        finally:
            queue.put_nowait(_DONE)

    runners = [asyncio.create_task(run(i)) for i in range(request.n)]
    try:
        finished = 0
        while finished < request.n:
            item = await queue.get()
            if item is _DONE:
                finished += 1
            elif isinstance(item, ProviderError):
                raise item
            else:
                yield item  # type: ignore[misc]
    finally:
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

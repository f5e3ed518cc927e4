"""Waking workers when a task is queued: at once in this process, through Redis elsewhere.

Polling the database stays the fallback, so a Redis outage slows pickup, never loses work.
"""

from __future__ import annotations

import asyncio

from imagegate.core.pubsub import Channel

CHANNEL = "imagegate:tasks-queued"  # the channel with the default prefix


def channel_name(prefix: str = "imagegate") -> str:
    """Per deployment (IMAGEGATE_RATE_LIMIT_PREFIX), so two sharing one Redis stay apart."""
    return f"{prefix}:tasks-queued"


class QueueNotifier:
    def __init__(self, redis_url: str | None = None, channel: str | None = None, *,
                 prefix: str = "imagegate") -> None:
        self.event = asyncio.Event()
        self.channel = (Channel(redis_url, channel or channel_name(prefix))
                        if redis_url else None)

    async def start(self, listen: bool) -> None:
        if self.channel is not None and listen:
            self.channel.listen(lambda _: self.event.set())

    def notify(self) -> None:
        self.event.set()
        if self.channel is not None:
            self.channel.publish("1")

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.aclose()

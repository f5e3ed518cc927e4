"""Waking workers when a task is queued: at once in this process, through Redis elsewhere.

Polling the database stays the fallback, so a Redis outage slows pickup, never loses work.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

log = structlog.get_logger("imagegate.notify")
CHANNEL = "imagegate:tasks-queued"


class QueueNotifier:
    def __init__(self, redis_url: str | None = None, channel: str = CHANNEL) -> None:
        self.event = asyncio.Event()
        self.redis_url = redis_url
        self.channel = channel
        self._redis: object | None = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self, listen: bool) -> None:
        if not self.redis_url:
            return
        import redis.asyncio as redis

        self._redis = redis.from_url(self.redis_url, socket_timeout=2,
                                     socket_connect_timeout=2)
        if listen:
            self._listener = asyncio.create_task(self._listen(), name="imagegate-wake")

    def notify(self) -> None:
        self.event.set()
        if self._redis is not None:
            task = asyncio.create_task(self._publish())
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _publish(self) -> None:
        try:
            await self._redis.publish(self.channel, b"1")  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - pickup falls back to polling
            log.warning("wake_publish_failed", error=type(e).__name__)

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                pubsub = self._redis.pubsub()  # type: ignore[attr-defined]
                await pubsub.subscribe(self.channel)
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.event.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                log.warning("wake_listen_failed", error=type(e).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()  # type: ignore[attr-defined]

"""A Redis pub/sub channel that keeps listening through outages, for best-effort signals.

Used for signals that have a slower fallback (workers also poll; caches also expire), so
failures here are logged and retried, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

log = structlog.get_logger("imagegate.pubsub")


class Channel:
    def __init__(self, redis_url: str, name: str) -> None:
        import redis.asyncio as redis

        self.name = name
        self.redis = redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._listener: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def publish(self, message: str) -> None:
        """Fire and forget: the caller never waits on Redis."""
        task = asyncio.get_running_loop().create_task(self._publish(message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, message: str) -> None:
        try:
            await self.redis.publish(self.name, message)
        except Exception as e:  # noqa: BLE001 - the fallback covers it
            log.warning("publish_failed", channel=self.name, error=type(e).__name__)

    def listen(self, on_message: Callable[[str], None],
               on_gap: Callable[[], None] | None = None) -> None:
        """Call ``on_message`` for each message; ``on_gap`` when messages may have been lost."""
        self._listener = asyncio.create_task(self._listen(on_message, on_gap),
                                             name=f"listen:{self.name}")

    async def _listen(self, on_message: Callable[[str], None],
                      on_gap: Callable[[], None] | None) -> None:
        delay = 0.5
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.subscribe(self.name)
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        on_message(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                log.warning("listen_failed", channel=self.name, error=type(e).__name__,
                            retry_in=delay)
                if on_gap is not None:
                    on_gap()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

"""A short-lived cache of credentials by token hash, so authentication costs no query.

Balances are never read from it (billing works on the database row). What it can serve
stale is disabled/expiry/scope/limits, for at most ``ttl`` seconds, and not even that on
the node that changed them: changes call :meth:`invalidate`, which also reaches other
nodes through Redis when it is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from imagegate.db.models import Credential

log = structlog.get_logger("imagegate.credcache")
CHANNEL = "imagegate:credentials-changed"
MAX_ENTRIES = 100_000


class CredentialCache:
    def __init__(self, ttl: float = 10.0, redis_url: str | None = None) -> None:
        self.ttl = ttl
        self.redis_url = redis_url
        self._by_hash: dict[str, tuple[float, Credential]] = {}
        self._redis: object | None = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.redis_url or self.ttl <= 0:
            return
        import redis.asyncio as redis

        self._redis = redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._listener = asyncio.create_task(self._listen(), name="imagegate-credcache")

    async def get(self, token_hash: str, load: Callable[[], Awaitable[Credential | None]]
                  ) -> Credential | None:
        now = time.monotonic()
        hit = self._by_hash.get(token_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        cred = await load()
        if cred is not None and self.ttl > 0:
            if len(self._by_hash) >= MAX_ENTRIES:
                self._by_hash.clear()
            self._by_hash[token_hash] = (now + self.ttl, cred)
        return cred

    def invalidate(self, credential_id: str | None = None) -> None:
        """Forget one credential (or all) here, and tell the other nodes."""
        self._forget(credential_id)
        if self._redis is not None:
            task = asyncio.get_running_loop().create_task(self._publish(credential_id or "*"))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _forget(self, credential_id: str | None) -> None:
        if credential_id is None or credential_id == "*":
            self._by_hash.clear()
            return
        for key, (_, cred) in list(self._by_hash.items()):
            if cred.id == credential_id:
                self._by_hash.pop(key, None)

    async def _publish(self, credential_id: str) -> None:
        try:
            await self._redis.publish(CHANNEL, credential_id)  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001 - the TTL still bounds staleness
            log.warning("credcache_publish_failed", error=type(e).__name__)

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                pubsub = self._redis.pubsub()  # type: ignore[attr-defined]
                await pubsub.subscribe(CHANNEL)
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        data = message["data"]
                        self._forget(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                log.warning("credcache_listen_failed", error=type(e).__name__)
                self._by_hash.clear()  # we may have missed changes
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

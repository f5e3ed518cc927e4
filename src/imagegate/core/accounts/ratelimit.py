"""Request-rate limits per credential (and per address for self-service), via `limits`.

In this process's memory by default; in the node's shared memory when it runs several
processes (`serve --processes N`), so they count against one window; in Redis when
IMAGEGATE_REDIS_URL is set, so every node does. If the store fails, requests are let
through (and logged): an outage of the limiter must not become an outage of the gateway.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from imagegate.core.accounts.node_limits import NodeMemoryStorage
from imagegate.core.errors import TooManyRequests
from imagegate.core.node_memory import NodeMemory
from imagegate.db.models import Credential

log = structlog.get_logger("imagegate.ratelimit")


@dataclass(frozen=True, slots=True)
class Limits:
    rps: int
    poll_rps: int
    concurrency: int


def limits_for(credential: Credential, *, rps: int, poll_rps: int, concurrency: int
               ) -> Limits:
    """The credential's own limits where it has them, the configured defaults elsewhere."""
    own = credential.rate_limits or {}
    return Limits(rps=int(own.get("rps") or rps), poll_rps=int(own.get("poll_rps") or poll_rps),
                  concurrency=int(own.get("concurrency") or concurrency))


class RateLimiter:
    def __init__(self, redis_url: str | None = None, prefix: str = "imagegate",
                 memory: NodeMemory | None = None) -> None:
        self.storage: Storage
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            self.storage = RedisStorage(uri, implementation="redispy", key_prefix=prefix,
                                        wrap_exceptions=True, socket_timeout=1,
                                        socket_connect_timeout=1)
        elif memory is not None:
            self.storage = NodeMemoryStorage(memory)
        else:
            self.storage = MemoryStorage()
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self._items: dict[int, RateLimitItem] = {}
        self._failing_since = 0.0

    async def hit(self, kind: str, key: str, per_second: int) -> None:
        """Count one request; raise 429 with Retry-After when over ``per_second``."""
        item = self._items.get(per_second)
        if item is None:
            item = self._items[per_second] = RateLimitItemPerSecond(per_second)
        await self.hit_item(kind, key, item, f"{per_second} requests per second")

    async def blocked(self, kind: str, key: str, item: RateLimitItem) -> int | None:
        """Seconds until ``key`` may be counted again when its window is full, else None
        (counting nothing: for limits on failures, checked before the attempt)."""
        try:
            if await self.limiter.test(item, kind, key):
                return None
            stats = await self.limiter.get_window_stats(item, kind, key)
        except Exception as e:  # noqa: BLE001 - fail open, as hit_item does
            log.warning("rate_limiter_unavailable", error=type(e).__name__)
            return None
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def hit_item(self, kind: str, key: str, item: RateLimitItem, what: str) -> None:
        try:
            allowed = await self.limiter.hit(item, kind, key)
            if allowed:
                self._failing_since = 0.0
                return
            stats = await self.limiter.get_window_stats(item, kind, key)
            wait = max(1, math.ceil(stats.reset_time - time.time()))
        except Exception as e:  # noqa: BLE001 - fail open
            if not self._failing_since:
                log.warning("rate_limiter_unavailable", error=type(e).__name__)
            self._failing_since = self._failing_since or time.time()
            return
        raise TooManyRequests(
            f"rate limit exceeded: {what} for this "
            f"{'address' if kind == 'ip' else 'credential'}; retry after {wait}s",
            headers={"Retry-After": str(wait)})

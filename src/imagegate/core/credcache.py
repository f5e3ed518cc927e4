"""A short-lived cache of credentials by token hash, so authentication costs no query.

Balances are never read from it (billing works on the database row). What it can serve
stale is disabled/expiry/scope/limits, for at most ``ttl`` seconds, and not even that on
the node that changed them: changes call :meth:`invalidate`, which also reaches other
nodes through Redis when it is configured.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from imagegate.core.pubsub import Channel
from imagegate.db.models import Credential

CHANNEL = "imagegate:credentials-changed"
MAX_ENTRIES = 100_000


class CredentialCache:
    def __init__(self, ttl: float = 10.0, redis_url: str | None = None) -> None:
        self.ttl = ttl
        self._by_hash: dict[str, tuple[float, Credential]] = {}
        self.channel = Channel(redis_url, CHANNEL) if redis_url and ttl > 0 else None

    async def start(self) -> None:
        if self.channel is not None:
            # a gap in the subscription may have hidden changes: start afresh
            self.channel.listen(self._forget, on_gap=self._by_hash.clear)

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
        self._forget(credential_id or "*")
        if self.channel is not None:
            self.channel.publish(credential_id or "*")

    def _forget(self, credential_id: str) -> None:
        if credential_id == "*":
            self._by_hash.clear()
            return
        for key, (_, cred) in list(self._by_hash.items()):
            if cred.id == credential_id:
                self._by_hash.pop(key, None)

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.aclose()

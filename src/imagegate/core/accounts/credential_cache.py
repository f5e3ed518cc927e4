"""A short-lived cache of credentials by token hash, so authentication costs no query.

Balances are never read from it (billing works on the database row). What it can serve
stale is disabled/expiry/scope/limits/deletion. Every credential change, from any process
(admin API, self-service, `imagegate tokens`), bumps a revision counter in the database in
the same transaction; with ``sessions`` given, the cache reads that counter at most once a
second (only while requests arrive) and starts afresh when it moved, so changes apply
everywhere within about a second without Redis. With Redis, changes also arrive at once
by pub/sub; between the processes of one node (``memory``), at once through a counter in
their shared memory, read on every lookup for the price of a memory read. ``ttl`` remains
the backstop when the database cannot be read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import structlog

from imagegate.core.accounts.credentials import READ_REVISION
from imagegate.core.node_memory import NodeMemory
from imagegate.core.pubsub import Channel
from imagegate.db.models import Credential

if TYPE_CHECKING:
    from imagegate.db.engine import Sessions

log = structlog.get_logger("imagegate.credcache")
CHANNEL = "imagegate:credentials-changed"  # the channel with the default prefix
MAX_ENTRIES = 100_000
CHECK_EVERY = 1.0  # seconds between revision reads


def channel_name(prefix: str = "imagegate") -> str:
    """Per deployment (IMAGEGATE_RATE_LIMIT_PREFIX), so two sharing one Redis stay apart."""
    return f"{prefix}:credentials-changed"


class CredentialCache:
    def __init__(self, ttl: float = 10.0, redis_url: str | None = None, *,
                 sessions: Sessions | None = None, prefix: str = "imagegate",
                 check_every: float = CHECK_EVERY, memory: NodeMemory | None = None) -> None:
        self.ttl = ttl
        self._by_hash: dict[str, tuple[float, Credential]] = {}
        self.channel = (Channel(redis_url, channel_name(prefix))
                        if redis_url and ttl > 0 else None)
        self._sessions = sessions
        self._check_every = check_every
        self._checked_at = float("-inf")
        self._revision: int | None = None
        # bumped whenever entries are dropped: a load that began before the drop may
        # have read the old row, and must not put it back
        self._generation = 0
        self._memory = memory
        self._epoch = memory.credentials_epoch if memory is not None else 0

    async def start(self) -> None:
        if self.channel is not None:
            # a gap in the subscription may have hidden changes: start afresh
            self.channel.listen(self._forget, on_gap=self._clear)

    async def get(self, token_hash: str, load: Callable[[], Awaitable[Credential | None]]
                  ) -> Credential | None:
        now = time.monotonic()
        if self._memory is not None and self._memory.credentials_epoch != self._epoch:
            self._epoch = self._memory.credentials_epoch  # a sibling process changed one
            self._clear()
        if (self._sessions is not None and self.ttl > 0
                and now - self._checked_at >= self._check_every):
            await self._check_revision(now)
        hit = self._by_hash.get(token_hash)
        if hit is not None and hit[0] > now:
            return hit[1]
        generation = self._generation
        cred = await load()
        if cred is not None and self.ttl > 0 and generation == self._generation:
            if len(self._by_hash) >= MAX_ENTRIES:
                self._clear()
            self._by_hash[token_hash] = (now + self.ttl, cred)
        return cred

    async def _check_revision(self, now: float) -> None:
        """One read for every request of this second: the ones arriving while it runs are
        served from the cache as it stood (at most a second old)."""
        assert self._sessions is not None
        self._checked_at = now
        try:
            async with self._sessions() as session:
                revision = (await session.execute(READ_REVISION)).scalar_one_or_none()
        except Exception as e:  # noqa: BLE001 - the TTL still bounds staleness
            log.warning("credential_revision_unreadable", error=type(e).__name__)
            return
        if revision != self._revision:
            self._revision = revision
            self._clear()

    def invalidate(self, credential_id: str | None = None) -> None:
        """Forget one credential (or all) here, and tell the other processes and nodes."""
        self._forget(credential_id or "*")
        if self._memory is not None:
            self._epoch = self._memory.bump_credentials()
        if self.channel is not None:
            self.channel.publish(credential_id or "*")

    def _forget(self, credential_id: str) -> None:
        if credential_id == "*":
            self._clear()
            return
        self._generation += 1
        for key, (_, cred) in list(self._by_hash.items()):
            if cred.id == credential_id:
                self._by_hash.pop(key, None)

    def _clear(self) -> None:
        self._generation += 1
        self._by_hash.clear()

    async def aclose(self) -> None:
        if self.channel is not None:
            await self.channel.aclose()

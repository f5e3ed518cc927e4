"""A `limits` storage in the node's shared memory: one rate limit for all the processes of
`imagegate serve --processes N`, without Redis.

Only what the sliding-window counter needs (and the plain counters of the base class). The
check and the increment happen under one lock, so unlike the in-memory and Redis storages
there is no race to undo: a hit is admitted only if it fits.
"""

from __future__ import annotations

import math
import time

from limits.aio.storage import SlidingWindowCounterSupport, Storage

from imagegate.core.node_memory import NodeMemory, key_hash

MAX_CACHED_KEYS = 10_000


class NodeMemoryStorage(Storage, SlidingWindowCounterSupport):
    def __init__(self, memory: NodeMemory) -> None:
        super().__init__(None, wrap_exceptions=True)
        self.memory = memory
        self._hashes: dict[str, int] = {}

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (OSError, ValueError)

    def _hash(self, key: str) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= MAX_CACHED_KEYS:
                self._hashes.clear()
            h = self._hashes[key] = key_hash(key)
        return h

    async def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int,
                                           amount: int = 1) -> bool:
        if amount > limit:
            return False
        h = self._hash(key)
        with self.memory.locked():
            now = time.time()  # under the lock: each process sees the windows move forward
            at = self.memory.slot(h, expiry, now)
            previous, current = self.memory.roll(at, now)
            weighted = previous * _previous_ttl(previous, expiry, now) / expiry + current
            if math.floor(weighted) + amount > limit:
                return False
            self.memory.add(at, amount)
            return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        h = self._hash(key)
        with self.memory.locked():
            now = time.time()
            at = self.memory.find(h)
            previous, current = self.memory.roll(at, now) if at is not None else (0, 0)
        return (previous, _previous_ttl(previous, expiry, now), current,
                (1 - ((now / expiry) % 1)) * expiry + expiry)

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        await self.clear(key)

    # the plain (fixed-window) counters of the Storage interface

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        h = self._hash(key)
        with self.memory.locked():
            now = time.time()
            at = self.memory.slot(h, max(1, int(expiry)), now)
            self.memory.roll(at, now)
            return self.memory.add(at, amount)

    async def get(self, key: str) -> int:
        with self.memory.locked():
            now = time.time()
            at = self.memory.find(self._hash(key))
            return self.memory.roll(at, now)[1] if at is not None else 0

    async def get_expiry(self, key: str) -> float:
        now = time.time()
        with self.memory.locked():
            at = self.memory.find(self._hash(key))
            if at is None:
                return now
            expiry = self.memory.expiry_of(at)
        return (now // expiry + 1) * expiry

    async def clear(self, key: str) -> None:
        with self.memory.locked():
            at = self.memory.find(self._hash(key))
            if at is not None:
                self.memory.clear(at)

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        with self.memory.locked():
            return self.memory.clear_all()


def _previous_ttl(previous: int, expiry: int, now: float) -> float:
    """How much of the previous window still lies inside the sliding one (as `limits`)."""
    if previous == 0:
        return 0.0
    return (1 - (((now - expiry) / expiry) % 1)) * expiry

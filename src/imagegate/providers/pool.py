"""Upstream connections in shards of httpx pools.

httpcore's pool looks at every connection and every waiting request whenever a request
starts or ends, so one pool holding thousands of long upstream calls (gpt-image-2 takes a
minute or more) costs O(n) per event and O(n^2) in all: measured here, 2,000 concurrent
calls through one client burned 77 s of CPU, against 4 s through shards of ten. Requests
go to the least busy shard, so at low load they all reuse the first shard's keep-alive
connections.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import orjson

SHARD_SIZE = 32  # connections per httpx pool


class ShardedClient:
    def __init__(self, timeout: float, max_connections: int,
                 headers: dict[str, str] | None = None, *, shard_size: int = SHARD_SIZE
                 ) -> None:
        shards = max(1, math.ceil(max_connections / shard_size))
        per_shard = math.ceil(max_connections / shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard,
                              keepalive_expiry=60)
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.shards = [httpx.AsyncClient(timeout=self.timeout, limits=limits, headers=headers,
                                         follow_redirects=False)
                       for _ in range(shards)]
        self.busy = [0] * shards

    @contextmanager
    def _shard(self) -> Iterator[httpx.AsyncClient]:
        """The least busy shard, counted as busy while the caller uses it."""
        busy = self.busy
        i = busy.index(min(busy))
        busy[i] += 1
        try:
            yield self.shards[i]
        finally:
            busy[i] -= 1

    async def post(self, url: str, *, json: Any = None, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> httpx.Response:
        """``json`` goes out through orjson: httpx's own encoding costs more than the rest of
        the request on this path."""
        if json is not None:
            kwargs["content"] = orjson.dumps(json)
            headers = {**(headers or {}), "content-type": "application/json"}
        with self._shard() as client:
            return await client.post(url, headers=headers, **kwargs)

    @asynccontextmanager
    async def stream(self, method: str, url: str, **kwargs: Any
                     ) -> AsyncIterator[httpx.Response]:
        with self._shard() as client:
            async with client.stream(method, url, **kwargs) as response:
                yield response

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self.shards))

"""The one HTTP client every upstream provider uses: an aiohttp session per upstream.

aiohttp replaced httpx here after a measurement (bench/RESULTS.md): 0.3 ms of client CPU
per upstream call against httpx's 1.3 ms, and its connector hands out a pooled connection
in constant time, so thousands of minute-long upstream calls need no sharding of the pool.
The session is opened on first use, inside the event loop that will run the calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

# What a provider catches around a call: the connection failed, broke, or timed out.
TransportError = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A whole upstream answer, read before the connection went back to the pool."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes


class UpstreamClient:
    def __init__(self, timeout: float, max_connections: int,
                 headers: Mapping[str, str] | None = None) -> None:
        # per phase, as the upstream's `timeout` always meant: connecting, and the silence
        # between two reads; the model's own timeout bounds the whole call
        self.timeout = aiohttp.ClientTimeout(total=None, connect=min(timeout, 10.0),
                                             sock_read=timeout)
        self.max_connections = max_connections
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                             keepalive_timeout=60, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, headers=self.headers,
                trust_env=False, raise_for_status=False, auto_decompress=True)
        return self._session

    @staticmethod
    def _body(json: Any, data: Any, headers: Mapping[str, str] | None
              ) -> tuple[Any, dict[str, str]]:
        """``json`` goes out through orjson, several times cheaper than the stdlib encoder
        on bodies that carry base64 images."""
        sent = dict(headers or {})
        if json is not None:
            sent["content-type"] = "application/json"
            return orjson.dumps(json), sent
        return data, sent

    async def post(self, url: str, *, json: Any = None, data: Any = None,
                   headers: Mapping[str, str] | None = None,
                   timeouts: aiohttp.ClientTimeout | None = None) -> UpstreamResponse:
        body, sent = self._body(json, data, headers)
        async with self.session.post(url, data=body, headers=sent, allow_redirects=False,
                                     timeout=timeouts or self.timeout) as response:
            content = await response.read()
            return UpstreamResponse(response.status, response.headers, content)

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, json: Any = None, data: Any = None,
                     headers: Mapping[str, str] | None = None,
                     timeouts: aiohttp.ClientTimeout | None = None,
                     follow_redirects: bool = False) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response with its body unread, for Server-Sent Events and capped downloads."""
        body, sent = self._body(json, data, headers)
        async with self.session.request(method, url, data=body, headers=sent,
                                        allow_redirects=follow_redirects,
                                        timeout=timeouts or self.timeout) as response:
            yield response

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

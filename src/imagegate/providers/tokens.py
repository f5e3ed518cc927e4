"""One access token shared by every request to an upstream (Vertex AI's OAuth2 tokens,
Azure's Entra ID ones): used until it nears its expiry, then the first request to need one
fetches the next while the others wait for that one fetch."""

from __future__ import annotations

import asyncio


class TokenError(Exception):
    """No token could be had (no credentials, a refused grant, an unreachable endpoint)."""


class SharedToken:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    def _fresh(self) -> str | None:
        """The token while it has time left, else None."""
        raise NotImplementedError

    async def _renew(self) -> None:
        """Fetch the next token; raises TokenError."""
        raise NotImplementedError

    async def token(self) -> str:
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh()  # another request renewed it while we waited
            if token is None:
                await self._renew()
                token = self._fresh()
        if token is None:
            raise TokenError("the token endpoint gave a token that is already expiring")
        return token

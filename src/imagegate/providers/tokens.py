"""One access token shared by every request to an upstream (Vertex AI's OAuth2 tokens,
Azure's Entra ID ones): used until it nears its expiry, then the first request to need one
fetches the next while the others wait for that one fetch. A token the upstream refuses
(401: revoked, or expired early) is dropped, so the call's one retry goes with a new one."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

from imagegate.providers.http import Scrubber

# the token this call sent: a 401 drops that one, not one another request fetched since
_sent: ContextVar[str | None] = ContextVar("token_sent", default=None)


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

    def drop(self, token: str) -> None:
        """The upstream refused ``token``: the next request gets a new one."""
        raise NotImplementedError

    async def bearer(self, scrub: Scrubber) -> dict[str, str]:
        """The Authorization header of one call; the token is kept out of its messages."""
        token = await self.token()
        _sent.set(token)
        scrub.secrets = list(dict.fromkeys([token, *scrub.secrets]))[:3]
        return {"authorization": f"Bearer {token}"}

    def refused(self, status: int) -> bool:
        """The upstream answered 401 to the token this call sent: it is dropped."""
        token = _sent.get()
        if status != 401 or token is None:
            return False
        self.drop(token)
        return True

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

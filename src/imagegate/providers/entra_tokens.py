"""Microsoft Entra ID access tokens for Azure OpenAI, by the OAuth 2.0 client credentials
grant (Microsoft identity platform, "OAuth 2.0 client credentials flow"): a form POST of
``grant_type=client_credentials``, ``client_id``, ``client_secret`` and ``scope`` to
``{authority}/{tenant}/oauth2/v2.0/token``, answered with ``{token_type, expires_in,
access_token}``. The scope of Azure OpenAI is ``https://cognitiveservices.azure.com/.default``
(what Azure's SDKs ask ``get_bearer_token_provider`` for).

A token is kept until it has less than ``REFRESH_MARGIN`` left; then the first request to
need one fetches the next while the others wait for it. A 401 from the resource drops the
token, so a revoked one is replaced on the next try. The grant has no refresh token: each
fetch is a new grant with the secret.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from imagegate.providers.client import TransportError, UpstreamClient
from imagegate.providers.http import json_body
from imagegate.providers.tokens import SharedToken, TokenError

__all__ = ["AUTHORITY", "SCOPE", "EntraTokens", "ServicePrincipal", "TokenError"]

AUTHORITY = "https://login.microsoftonline.com"
SCOPE = "https://cognitiveservices.azure.com/.default"
REFRESH_MARGIN = 300.0  # seconds before expiry: a token is never sent in its last minutes


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    tenant_id: str
    client_id: str
    client_secret: str | None
    authority: str = AUTHORITY
    scope: str = SCOPE

    @property
    def token_url(self) -> str:
        return f"{self.authority.rstrip('/')}/{self.tenant_id}/oauth2/v2.0/token"


class EntraTokens(SharedToken):
    def __init__(self, principal: ServicePrincipal, client: UpstreamClient) -> None:
        super().__init__()
        self.principal = principal
        self.client = client
        self.grants = 0
        self._token: str | None = None
        self._expires = 0.0

    def _fresh(self) -> str | None:
        if self._token is None or self._expires - time.monotonic() < REFRESH_MARGIN:
            return None
        return self._token

    def drop(self, token: str) -> None:
        """The resource refused ``token``: the next request gets a new one."""
        if token == self._token:
            self._token = None

    async def _renew(self) -> None:
        p = self.principal
        if not p.client_secret:
            raise TokenError("no client secret")
        form = {"grant_type": "client_credentials", "client_id": p.client_id,
                "client_secret": p.client_secret, "scope": p.scope}
        started = time.monotonic()
        try:
            response = await self.client.post(p.token_url, data=form,
                                              headers={"accept": "application/json"})
        except TransportError as e:
            raise TokenError(f"the token endpoint could not be reached ({type(e).__name__})"
                             ) from None
        self.grants += 1
        body = json_body(response)
        if response.status != 200 or not isinstance(body, dict):
            raise TokenError(f"the token grant was refused (HTTP {response.status}"
                             f"{refusal(body)})")
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float
                                                                      | str):
            raise TokenError("the token endpoint answered without access_token or expires_in")
        try:
            self._expires = started + float(lifetime)
        except ValueError:
            raise TokenError("the token endpoint answered an expires_in that is no number"
                             ) from None
        self._token = token


def refusal(body: Any) -> str:
    """Entra's ``error`` and the first line of ``error_description`` (``AADSTS7000215:
    Invalid client secret provided...``): they name the cause, never the secret."""
    if not isinstance(body, dict):
        return ""
    code = str(body.get("error") or "")[:60]
    description = str(body.get("error_description") or "").strip().splitlines()
    first = description[0][:200] if description else ""
    return f": {code}" + (f", {first}" if first else "") if code or first else ""

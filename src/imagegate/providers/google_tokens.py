"""OAuth2 access tokens for Google Cloud (Vertex AI), through google-auth.

From a service-account key file (google-auth signs a JWT with the key and trades it at the
key's ``token_uri`` for an access token) or the environment's default credentials
(GOOGLE_APPLICATION_CREDENTIALS, gcloud's, a metadata server). A token is kept and used
until it has less than ``REFRESH_MARGIN`` left; then the first request to need one
refreshes it while the others wait for that one refresh (google-auth's refresh is
blocking, so it runs in a thread). A 401 from the upstream drops the token, so a revoked
one is replaced on the next try.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from imagegate.providers.tokens import SharedToken, TokenError

__all__ = ["AccessTokens", "TokenError"]

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN = 300.0  # seconds before expiry: a token is never sent in its last minutes


class AccessTokens(SharedToken):
    def __init__(self, key_file: str | None = None) -> None:
        super().__init__()
        self.key_file = key_file
        self.project: str | None = None  # what the credentials name, if anything
        self.refreshes = 0
        self._credentials: Any = None
        self._dropped: str | None = None

    def _fresh(self) -> str | None:
        creds = self._credentials
        token = getattr(creds, "token", None)
        if not token or token == self._dropped:
            return None
        expiry = getattr(creds, "expiry", None)  # naive UTC, as google-auth keeps it
        if expiry is not None:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            if (expiry - now).total_seconds() < REFRESH_MARGIN:
                return None
        return str(token)

    async def _renew(self) -> None:
        await asyncio.to_thread(self._refresh)  # google-auth's refresh blocks
        self.refreshes += 1

    def drop(self, token: str) -> None:
        """The upstream refused ``token``: the next request gets a new one."""
        self._dropped = token

    def _load(self) -> Any:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
        from google.oauth2 import service_account

        try:
            if self.key_file:
                creds = service_account.Credentials.from_service_account_file(
                    self.key_file, scopes=SCOPES)
                self.project = getattr(creds, "project_id", None)
                return creds
            creds, self.project = google.auth.default(scopes=SCOPES)
            return creds
        except (OSError, ValueError, DefaultCredentialsError) as e:
            where = f"key file {self.key_file}" if self.key_file else "default credentials"
            raise TokenError(f"cannot load the {where} ({type(e).__name__})") from None

    def _refresh(self) -> None:
        from google.auth.exceptions import GoogleAuthError
        from google.auth.transport.requests import Request

        if self._credentials is None:
            self._credentials = self._load()
        try:
            self._credentials.refresh(Request())
        except GoogleAuthError as e:
            # google-auth's message quotes the token endpoint's answer, never our key
            raise TokenError(f"the token grant was refused ({type(e).__name__})") from None

"""The Microsoft identity platform's token endpoint for one service principal, as the fake
Azure OpenAI resource serves it beside its deployments.

From Microsoft's "OAuth 2.0 client credentials flow" article: ``POST /{tenant}/oauth2/v2.0/
token`` with an ``application/x-www-form-urlencoded`` body of ``client_id``, ``scope`` (the
resource's ID with ``/.default``), ``client_secret`` and ``grant_type=client_credentials``;
success is ``{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
"access_token": ...}``, an error ``{"error", "error_description", "error_codes",
"timestamp", "trace_id", "correlation_id"}`` whose description begins with its AADSTS code:
a wrong secret is 401 ``invalid_client`` AADSTS7000215, an unknown application 400
``unauthorized_client`` AADSTS700016, an unknown tenant 400 ``invalid_request`` AADSTS90002,
a scope without ``/.default`` 400 ``invalid_scope`` AADSTS1002012.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs

from imagegate.testing.records import RecordedRequest, Response, json_response

SCOPE = "https://cognitiveservices.azure.com/.default"
AUDIENCE = "https://cognitiveservices.azure.com"


class EntraIssuer:
    def __init__(self, tenant_id: str, client_id: str, client_secret: str,
                 lifetime: int = 3599) -> None:
        self.tenant_id, self.client_id, self.client_secret = tenant_id, client_id, client_secret
        self.lifetime = lifetime  # seconds, as expires_in says
        self.delay = 0.0  # seconds each grant takes
        self.grants: list[dict[str, str]] = []  # each grant's form, the secret masked
        self._issued: dict[str, float] = {}  # token -> monotonic expiry
        self._lock = threading.Lock()

    def valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and time.monotonic() < expiry

    def revoke_all(self) -> None:
        with self._lock:
            self._issued.clear()

    def grant(self, tenant: str, request: RecordedRequest) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        with self._lock:
            self.grants.append({**form, "client_secret": "***"} if "client_secret" in form
                               else form)
        if not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            return _error(400, "invalid_request", 900144, "The request body must contain the "
                          "following parameter: 'grant_type'.")
        if tenant != self.tenant_id:
            return _error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check "
                          "to make sure you have the correct tenant ID and are signing into "
                          "the correct cloud.")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", 70003, "The app requested an "
                          "unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return _error(400, "unauthorized_client", 700016, "Application with identifier "
                          f"'{form.get('client_id')}' was not found in the directory "
                          f"'{tenant}'.")
        if not hmac.compare_digest(form.get("client_secret", "").encode(),
                                   self.client_secret.encode()):
            return _error(401, "invalid_client", 7000215, "Invalid client secret provided. "
                          "Ensure the secret being sent in the request is the client secret "
                          "value, not the client secret ID, for a secret added to app "
                          f"'{self.client_id}'.")
        if form.get("scope") != SCOPE:
            return _error(400, "invalid_scope", 1002012, f"The provided value for scope "
                          f"{form.get('scope')} is not valid. Client credential flows must "
                          "have a scope value with /.default suffixed to the resource "
                          "identifier (application ID URI).")
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(32)
        with self._lock:
            self._issued[token] = time.monotonic() + self.lifetime
        return json_response(200, {"token_type": "Bearer", "expires_in": self.lifetime,
                                   "ext_expires_in": self.lifetime, "access_token": token})


def _error(status: int, error: str, code: int, text: str) -> Response:
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return json_response(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: "
                             f"{correlation}\r\nTimestamp: {now}",
        "error_codes": [code], "timestamp": now, "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}"})

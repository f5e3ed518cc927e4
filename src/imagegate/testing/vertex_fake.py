"""A fake Vertex AI (Gemini image models) and the Google OAuth2 token endpoint it trusts.

Vertex: ``POST /v1/projects/{project}/locations/{location}/publishers/google/models/
{model}:generateContent`` (Vertex AI REST reference, projects.locations.publishers.models.
generateContent; regional hosts ``{location}-aiplatform.googleapis.com``, the global one
``aiplatform.googleapis.com``), with ``Authorization: Bearer <access token>``, and
``:streamGenerateContent?alt=sse`` beside it (the same resource's streamGenerateContent;
"REST API with server-sent events", Vertex AI "Stream responses" guide). Body and answer
are the Gemini API's, so the Gemini fake's rules, sizes, streams and faults apply. A missing
or unknown token is 401 ``UNAUTHENTICATED`` ("Request had invalid authentication
credentials. Expected OAuth 2 access token ..."); another project is 403
``PERMISSION_DENIED`` ("Permission 'aiplatform.endpoints.predict' denied on resource ...").

The token endpoint is what google-auth's service-account flow calls (google-auth
``google/oauth2/_client.py`` ``jwt_grant``): a form POST to the key file's ``token_uri``
with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and ``assertion``, a JWT
signed RS256 by the service account's private key (header ``kid`` = ``private_key_id``;
claims ``iss`` = ``client_email``, ``aud`` = ``https://oauth2.googleapis.com/token``,
``scope``, ``iat``, ``exp``, at most an hour apart). The fake checks the signature with
the account's public key and answers ``{"access_token", "expires_in", "token_type":
"Bearer"}``, or 400 ``invalid_grant`` ("Invalid JWT Signature.") as Google does.
``service_account_key()`` writes a key file for a new account.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from imagegate.testing.gemini_fake import FakeGemini
from imagegate.testing.gemini_wire import GeminiError
from imagegate.testing.records import Fault, RecordedRequest, Response, json_response
from imagegate.testing.server import FakeServer

_PATH = re.compile(r"^/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/"
                   r"models/([^/:]+):(generateContent|streamGenerateContent)$")
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# google-auth's service-account JWTs name Google's token endpoint as their audience whatever
# the key file's token_uri (service_account._GOOGLE_OAUTH2_TOKEN_ENDPOINT)
AUDIENCE = "https://oauth2.googleapis.com/token"


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


class FakeGoogleOAuth(FakeServer):
    """The token endpoint: service-account JWTs in, access tokens out."""

    kind = "google-oauth"
    server_header = "scaffolding on HTTPServer2"

    def __init__(self, *, token_lifetime: int = 3600, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__("", host=host, port=port)
        self.token_lifetime = token_lifetime
        self._accounts: dict[str, tuple[str, rsa.RSAPublicKey]] = {}  # email -> (kid, key)
        self._tokens: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._issued: list[str] = []
        self._tokens_lock = threading.Lock()

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def service_account(self, email: str, project: str) -> dict[str, Any]:
        """A new key for ``email``: the JSON a key file holds, its token_uri this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = secrets.token_hex(20)
        self._accounts[email] = (kid, key.public_key())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": project, "private_key_id": kid,
                "private_key": pem, "client_email": email, "client_id": "1" * 21,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": self.token_uri, "universe_domain": "googleapis.com"}

    def valid(self, token: str) -> bool:
        with self._tokens_lock:
            expiry = self._tokens.get(token)
        return expiry is not None and time.time() < expiry

    def revoke_all(self) -> None:
        with self._tokens_lock:
            self._tokens.clear()

    @property
    def tokens(self) -> list[str]:
        """Every access token issued, oldest first (revoked ones included)."""
        with self._tokens_lock:
            return list(self._issued)

    def error_response(self, status: int, fault: Fault) -> Response:
        return json_response(status, {"error": fault.code or "internal_failure",
                                      "error_description": fault.message or f"HTTP {status}"})

    async def handle(self, request: RecordedRequest, fault: Fault | None) -> Response:
        if request.path != "/token" or request.method != "POST":
            return json_response(404, {"error": "not_found"})
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        if form.get("grant_type") != GRANT:
            return self._refuse("unsupported_grant_type",
                                f"Invalid grant_type: {form.get('grant_type', '')}")
        problem = self._check(form.get("assertion", ""))
        if problem is not None:
            return self._refuse("invalid_grant", problem)
        token = f"ya29.c.{secrets.token_urlsafe(48)}"
        with self._tokens_lock:
            self._tokens[token] = time.time() + self.token_lifetime
            self._issued.append(token)
        return json_response(200, {"access_token": token, "expires_in": self.token_lifetime,
                                   "token_type": "Bearer"})

    def _refuse(self, error: str, description: str) -> Response:
        return json_response(400, {"error": error, "error_description": description})

    def _check(self, assertion: str) -> str | None:
        try:
            head, body, signature = assertion.split(".")
            header, claims = json.loads(_b64url(head)), json.loads(_b64url(body))
            sig = _b64url(signature)
        except ValueError:
            return "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe."
        account = self._accounts.get(str(claims.get("iss")))
        if header.get("alg") != "RS256" or account is None or header.get("kid") != account[0]:
            return "Invalid JWT Signature."
        try:
            account[1].verify(sig, f"{head}.{body}".encode(), padding.PKCS1v15(),
                              hashes.SHA256())
        except InvalidSignature:
            return "Invalid JWT Signature."
        now = time.time()
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if claims.get("aud") not in (AUDIENCE, self.token_uri) or \
                not (iat - 300 <= now < exp) or \
                exp - iat > 3600:
            return "Invalid JWT: Token must be a short-lived token (60 minutes) and in a " \
                   "reasonable timeframe. Check your iat and exp values in the JWT claim."
        if SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid OAuth scope or ID token audience provided."
        return None


class FakeVertex(FakeGemini):
    """Vertex AI's generateContent for ``project``, trusting tokens from ``oauth``."""

    kind = "vertex"

    def __init__(self, project: str = "imagegate-test", *, oauth: FakeGoogleOAuth | None = None,
                 host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        super().__init__("", host=host, port=port, latency=latency)
        self.project = project
        self.oauth = oauth or FakeGoogleOAuth(host=host)
        self.locations: list[str] = []  # of each generateContent call, in order

    def start(self) -> FakeVertex:
        self.oauth.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.oauth.stop()

    def service_account_key(self, path: Path, email: str = "imagegate@imagegate-test.iam"
                            ".gserviceaccount.com") -> Path:
        path.write_text(json.dumps(self.oauth.service_account(email, self.project)))
        return path

    def error_response(self, status: int, fault: Fault) -> Response:
        if status == 429 and fault.quota_id is None and fault.message is None:
            fault = replace(fault, message="Resource exhausted. Please try again later. "
                            "Please refer to https://cloud.google.com/vertex-ai/generative-ai/"
                            "docs/error-code-429 for more details.")
        return super().error_response(status, fault)

    def _check_auth(self, request: RecordedRequest) -> GeminiError | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self.oauth.valid(token.strip()):
            return GeminiError(401, "Request had invalid authentication credentials. Expected "
                               "OAuth 2 access token, login cookie or other valid "
                               "authentication credential. See https://developers.google.com/"
                               "identity/sign-in/web/devconsole-project.", "UNAUTHENTICATED")
        return None

    async def handle(self, request: RecordedRequest, fault: Fault | None) -> Response:
        match = _PATH.match(request.path)
        if match is None or request.method != "POST":
            return self._not_found_page(request.path)
        _, project, location, model, method = match.groups()
        problem = self._check_auth(request)
        if problem is not None:
            return self._error(problem)
        if not hmac.compare_digest(project.encode(), self.project.encode()):
            return self._error(GeminiError(
                403, f"Permission 'aiplatform.endpoints.predict' denied on resource "
                f"'//aiplatform.googleapis.com/projects/{project}/locations/{location}/"
                f"publishers/google/models/{model}' (or it may not exist).",
                "PERMISSION_DENIED"))
        self.locations.append(location)
        # past Vertex's own checks the call is the Gemini API's: the Gemini fake answers it
        inner = replace(request, path=f"/v1beta/models/{model}:{method}")
        return await super().handle(inner, fault)

"""Gemini image models on Vertex AI (the nano-banana family for Google Cloud customers).

``POST https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/
{location}/publishers/google/models/{model}:generateContent``, or the global endpoint
``https://aiplatform.googleapis.com/...locations/global/...`` (the host the google-genai
SDK and Google's client libraries pick for location ``global``). The body and answer are
the Gemini API's (so ``GeminiProvider`` does the work), authenticated by an OAuth2 access
token (``google_tokens``) instead of an API key. Edits ride in ``inlineData`` parts, as
on the Gemini API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from imagegate.providers import http
from imagegate.providers.base import (
    ImageRequest,
    ProviderError,
    TokenRefused,
    UpstreamAuthError,
)
from imagegate.providers.gemini import GeminiProvider
from imagegate.providers.google_tokens import AccessTokens, TokenError

if TYPE_CHECKING:
    from imagegate.core.routing.registry import UpstreamConfig


def vertex_root(location: str) -> str:
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


class VertexProvider(GeminiProvider):
    several_per_call = False

    def __init__(self, name: str, config: UpstreamConfig,
                 environ: Mapping[str, str] | None = None) -> None:
        options = config.options
        self.location = str(options.get("location") or "global")
        self.api_version = str(options.get("api_version") or "v1")
        key_file = options.get("key_file")
        self.tokens = AccessTokens(str(key_file) if key_file else None)
        self._project = str(options["project"]) if options.get("project") else None
        super().__init__(name, config.model_copy(update={
            "base_url": config.base_url or vertex_root(self.location)}), environ)
        self.api_key = None
        self.key_env = "options.key_file or the default credentials"

    @property
    def project(self) -> str | None:
        return self._project or self.tokens.project

    def endpoint(self, request: ImageRequest) -> str:
        path = (f"projects/{quote(self.project or '', safe='')}/locations/"
                f"{quote(self.location, safe='')}/publishers/google/models/"
                f"{quote(request.upstream_model, safe='')}:generateContent")
        return f"{self.base_url}/{self.api_version}/{path}"

    async def auth_headers(self, channel: str) -> dict[str, str]:
        try:
            headers = await self.tokens.bearer(self.scrub)
        except TokenError as e:
            raise UpstreamAuthError(f"upstream {channel} has no access token: {e}") from None
        if not self.project:
            raise UpstreamAuthError(f"upstream {channel} has no project: set options.project")
        return headers

    def classify(self, channel: str, response: http.UpstreamResponse) -> ProviderError:
        error = http.classify(channel, response, self.scrub,
                              auth_hint="; check the service account and its roles")
        if self.tokens.refused(response.status):
            return TokenRefused(error.message)
        return error

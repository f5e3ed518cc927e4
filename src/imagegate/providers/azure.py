"""Azure OpenAI: image models deployed in an Azure resource.

``POST {endpoint}/openai/deployments/{deployment}/images/generations?api-version=...`` (and
``/images/edits``, multipart), authenticated by an ``api-key`` header or a Microsoft Entra
bearer token (Azure OpenAI REST reference, "Image generations - Create" and "- Edit"):
``auth: entra`` fetches and renews those tokens for a service principal (entra_tokens).
A channel's ``model`` is the deployment's name; the body carries no model. Refusals by
Azure's content filter come back as HTTP 400 whose error has an inner error with code
``ResponsibleAIPolicyViolation`` and the ``content_filter_results`` that tripped; they are
our ``forbidden``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from imagegate.providers import http
from imagegate.providers.base import (
    ContentBlocked,
    ImageRequest,
    ProviderError,
    TokenRefused,
    UpstreamAuthError,
)
from imagegate.providers.entra_tokens import (
    AUTHORITY,
    SCOPE,
    EntraTokens,
    ServicePrincipal,
    TokenError,
)
from imagegate.providers.openai import OpenAIProvider

if TYPE_CHECKING:
    from imagegate.core.routing.registry import UpstreamConfig

DEFAULT_API_VERSION = "2025-04-01-preview"
POLICY_VIOLATION = "ResponsibleAIPolicyViolation"


class AzureOpenAIProvider(OpenAIProvider):
    several_per_call = True

    def __init__(self, name: str, config: UpstreamConfig,
                 environ: Mapping[str, str] | None = None) -> None:
        if not config.base_url:
            raise ValueError(f"upstream {name} (azure) needs base_url: the resource endpoint, "
                             "https://<resource>.openai.azure.com")
        super().__init__(name, config, environ)
        self.base_url = http.strip_version(config.base_url, "/openai")
        self.key_env = config.key_env or "AZURE_OPENAI_API_KEY"
        self.api_version = str(config.options.get("api_version") or DEFAULT_API_VERSION)
        options = config.options
        auth = options.get("auth") or "api-key"  # one of UpstreamConfig's: it checks them
        self.bearer = auth == "bearer"
        self.tokens: EntraTokens | None = None
        if auth == "entra":
            self.tokens = EntraTokens(ServicePrincipal(
                str(options["tenant_id"]), str(options["client_id"]), self.api_key,
                str(options.get("authority") or AUTHORITY), str(options.get("scope") or SCOPE),
            ), self.client)

    def body(self, request: ImageRequest) -> dict[str, Any]:
        body = super().body(request)
        body.pop("model", None)  # the deployment names the model
        return body

    def endpoint(self, request: ImageRequest, operation: str) -> str:
        deployment = quote(request.upstream_model, safe="")
        return (f"{self.base_url}/openai/deployments/{deployment}/images/{operation}"
                f"?api-version={quote(self.api_version, safe='')}")

    async def auth_headers(self, channel: str) -> dict[str, str]:
        if self.tokens is not None:
            try:
                return await self.tokens.bearer(self.scrub)
            except TokenError as e:
                raise UpstreamAuthError(f"upstream {channel} has no Entra ID token: {e}; "
                                        f"check options.tenant_id, options.client_id and "
                                        f"{self.key_env}") from None
        if self.bearer:
            return {"authorization": f"Bearer {self.api_key}"}
        return {"api-key": self.api_key or ""}

    def classify(self, channel: str, response: http.UpstreamResponse) -> ProviderError:
        if self.tokens is not None and self.tokens.refused(response.status):
            return TokenRefused(super().classify(channel, response).message)
        body = http.json_body(response)
        err = body.get("error") if isinstance(body, dict) else None
        inner = (err.get("inner_error") or err.get("innererror")) if isinstance(err, dict) \
            else None
        if isinstance(inner, dict) and inner.get("code") == POLICY_VIOLATION:
            _, message = http.error_of(response, self.scrub, body)
            tripped = filtered(inner.get("content_filter_results")
                               or inner.get("content_filter_result"))
            return ContentBlocked(message + (f" (filtered: {', '.join(tripped)})"
                                             if tripped else ""))
        return super().classify(channel, response)


def filtered(results: Any) -> list[str]:
    """The content filter categories that blocked (``filtered: true``), by name."""
    if not isinstance(results, dict):
        return []
    return [str(name)[:40] for name, result in results.items()
            if isinstance(result, dict) and result.get("filtered") is True][:10]

"""OpenAI Images API (and anything that speaks it: relays, another imagegate; Azure OpenAI's
deployments are ``azure``, a subclass)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from imagegate.providers import http, openai_stream
from imagegate.providers.base import (
    EditRequest,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    ProviderError,
    UpstreamAuthError,
    UpstreamUnavailable,
)
from imagegate.providers.openai_edits import edit_form
from imagegate.providers.streaming import StreamEvent

if TYPE_CHECKING:  # providers take the config object, but never import the core
    from imagegate.core.routing.registry import UpstreamConfig

# what each family forwards when the channel has no `send` list
DEFAULT_SEND = {
    "dalle": ("prompt", "n", "size", "quality", "style", "user"),
    "gpt-image": ("prompt", "n", "size", "quality", "background", "output_format",
                  "output_compression", "moderation", "user", "input_fidelity"),
    "nano-banana": ("prompt", "n", "size", "user"),
}


META_FIELDS = ("size", "quality", "background", "output_format")


def meta_of(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The image fields of OpenAI's answer (ImagesResponse, or a stream's events)."""
    meta = {f: payload[f] for f in META_FIELDS if isinstance(payload.get(f), str)}
    return meta or None


class OpenAIProvider:
    several_per_call = True  # `n` in one call (a channel to a Gemini model behind such an
    #                          API sets `fan_out: true`)

    def __init__(self, name: str, config: UpstreamConfig,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.config = config
        self.base_url = http.strip_version(config.base_url or "https://api.openai.com", "/v1")
        self.api_key = config.api_key(environ)
        self.scrub = http.Scrubber(self.api_key, self.base_url)
        self.key_env = config.api_key_env or "OPENAI_API_KEY"
        headers = {"user-agent": "imagegate"}
        if config.organization_env:
            org = (environ if environ is not None else os.environ).get(config.organization_env)
            if org:
                headers["openai-organization"] = org
        self.client = http.make_client(config.timeout, config.max_connections, headers)
        self.max_download = int(config.options.get("max_download_bytes", http.MAX_DOWNLOAD))

    def body(self, request: ImageRequest) -> dict[str, Any]:
        """Only what the channel sends, translated by its value maps."""
        send = request.options.get("send") or DEFAULT_SEND[request.family]
        value_map: Mapping[str, Mapping[str, str]] = request.options.get("map") or {}
        body: dict[str, Any] = {"model": request.upstream_model}
        for field in send:
            value = getattr(request, field, None)
            if value is None:
                continue
            if isinstance(value, str) and field in value_map:
                value = value_map[field].get(value, value)
            body[field] = value
        return body

    def endpoint(self, request: ImageRequest, operation: str) -> str:
        return f"{self.base_url}/v1/images/{operation}"

    async def auth_headers(self, channel: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}

    def classify(self, channel: str, response: http.UpstreamResponse) -> ProviderError:
        return http.classify(channel, response, self.scrub, auth_hint=f"; check {self.key_env}")

    async def generate(self, request: ImageRequest) -> ImageResult:
        return await self._call(request, "generations", json=self.body(request))

    def stream(self, request: ImageRequest) -> AsyncIterator[StreamEvent]:
        """Generations and edits with ``stream: true`` (SPEC section 8)."""
        return openai_stream.stream(self, request)

    async def edit(self, request: EditRequest) -> ImageResult:
        """``POST /v1/images/edits``: the same fields, as multipart with the inputs."""
        return await self._call(request, "edits", data=edit_form(self.body(request), request))

    async def _call(self, request: ImageRequest, operation: str, *, json: Any = None,
                    data: Any = None) -> ImageResult:
        channel = f"{self.name}/{request.upstream_model}"  # what messages name, never the URL
        if not self.api_key:
            raise UpstreamAuthError(f"upstream {channel} has no API key: set {self.key_env}")
        try:
            response = await self.client.post(
                self.endpoint(request, operation), json=json, data=data,
                headers=await self.auth_headers(channel))
        except http.TransportError as e:
            raise http.transport_error(channel, e) from None
        if response.status != 200:
            raise self.classify(channel, response)
        return await self.result_of(channel, http.json_body(response))

    async def result_of(self, channel: str, payload: Any) -> ImageResult:
        """An ImagesResponse's images (b64_json, or a URL to download), usage and fields."""
        if not isinstance(payload, dict):
            raise UpstreamUnavailable(f"upstream {channel} sent a body that is not JSON")
        items = payload.get("data")
        if not isinstance(items, list) or not items:
            raise UpstreamUnavailable(f"upstream {channel} sent no images")
        images = []
        for item in items:
            if not isinstance(item, dict):
                raise UpstreamUnavailable(f"upstream {channel} sent a malformed data item")
            if item.get("b64_json"):
                data, mime = await http.b64_image(channel, item["b64_json"])
            elif isinstance(item.get("url"), str):
                data = await http.download(self.client, channel, item["url"],
                                           max_bytes=self.max_download)
                mime = await http.checked_image(channel, data)
            else:
                raise UpstreamUnavailable(f"upstream {channel} sent an item with no image")
            revised = item.get("revised_prompt")
            images.append(GeneratedImage(data, mime, revised if isinstance(revised, str)
                                         else None))
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else None
        return ImageResult(images=images, usage=usage, upstream=channel, meta=meta_of(payload))

    async def aclose(self) -> None:
        await self.client.aclose()

"""OpenRouter (and other chat-completions services that return images): Gemini's image
models through ``POST /api/v1/chat/completions``.

The request asks for ``modalities: ["image", "text"]``; the images come back in
``choices[0].message.images[]`` as ``{"type": "image_url", "image_url": {"url":
"data:image/png;base64,..."}}`` (OpenRouter's image generation guide). Aspect ratio and
size go in ``image_config`` (``aspect_ratio``, ``image_size``); an edit's inputs ride as
``image_url`` content parts before the instruction. Errors are ``{"error": {"code":
<HTTP status>, "message", "metadata"}}`` with the status: 401 bad key, 402 out of credits,
403 the input was flagged by moderation (``metadata.reasons``), 408, 429, 502 and 503
(OpenRouter's "Errors" page). One image per call, so ``n`` fans out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from imagegate import b64
from imagegate.providers import http
from imagegate.providers.base import (
    ContentBlocked,
    EditRequest,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    NoImage,
    ProviderError,
    QuotaExhausted,
    UpstreamAuthError,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from imagegate.core.routing.registry import UpstreamConfig

_DATA_URL = re.compile(r"^data:(image/[\w.+-]+);base64,(.*)$", re.S)


class OpenRouterProvider:
    several_per_call = False

    def __init__(self, name: str, config: UpstreamConfig,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.base_url = http.strip_version(config.base_url or "https://openrouter.ai/api", "/v1")
        self.api_key = config.api_key(environ)
        self.key_env = config.key_env or "OPENROUTER_API_KEY"
        self.scrub = http.Scrubber(self.api_key, self.base_url)
        headers = {"user-agent": "imagegate"}
        # OpenRouter's optional app attribution headers
        if config.options.get("referer"):
            headers["http-referer"] = str(config.options["referer"])
        if config.options.get("title"):
            headers["x-title"] = str(config.options["title"])
        self.client = http.make_client(config.timeout, config.max_connections, headers)

    def body(self, request: ImageRequest) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [
            {"type": "image_url",
             "image_url": {"url": f"data:{image.mime_type};base64,{image.b64}"}}
            for image in getattr(request, "images", ())]
        parts.append({"type": "text", "text": request.prompt})
        body: dict[str, Any] = {
            "model": request.upstream_model,
            "messages": [{"role": "user", "content": parts}],
            "modalities": ["image", "text"],
        }
        image_config: dict[str, Any] = {}
        if request.aspect_ratio:
            image_config["aspect_ratio"] = request.aspect_ratio
        if request.options.get("image_size") and request.image_size:
            image_config["image_size"] = request.image_size
        if image_config:
            body["image_config"] = image_config
        if request.user:
            body["user"] = request.user
        return body

    async def edit(self, request: EditRequest) -> ImageResult:
        return await self.generate(request)

    async def generate(self, request: ImageRequest) -> ImageResult:
        channel = f"{self.name}/{request.upstream_model}"
        if not self.api_key:
            raise UpstreamAuthError(f"upstream {channel} has no API key: set {self.key_env}")
        try:
            response = await self.client.post(
                f"{self.base_url}/v1/chat/completions", json=self.body(request),
                headers={"authorization": f"Bearer {self.api_key}"})
        except http.TransportError as e:
            raise http.transport_error(channel, e) from None
        payload = http.json_body(response)
        if response.status != 200:
            raise self.classify(channel, response, payload)
        if not isinstance(payload, dict):
            raise UpstreamUnavailable(f"upstream {channel} sent a body that is not JSON")
        if isinstance(payload.get("error"), dict):  # failed after the 200 was sent
            raise UpstreamUnavailable(f"upstream {channel} failed: "
                                      f"{self._said(payload['error'].get('message'))}")
        choices = payload.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise UpstreamUnavailable(f"upstream {channel} sent no message")
        images = [await self._image(channel, item) for item in message.get("images") or []
                  if isinstance(item, dict)][:max(1, request.n)]
        if not images:
            raise self._no_image(channel, choice, message)
        usage = payload.get("usage")
        return ImageResult(images=images, usage=usage if isinstance(usage, dict) else None,
                           upstream=channel)

    async def _image(self, channel: str, item: dict[str, Any]) -> GeneratedImage:
        url = (item.get("image_url") or {}).get("url") if isinstance(
            item.get("image_url"), dict) else None
        match = _DATA_URL.match(url) if isinstance(url, str) else None
        if match is None:
            raise UpstreamUnavailable(f"upstream {channel} sent an image that is not a data URL")
        try:
            data = b64.decode(match.group(2))
        except (b64.Error, ValueError):
            raise UpstreamUnavailable(f"upstream {channel} sent malformed base64") from None
        return GeneratedImage(data, await http.checked_image(channel, data), None)

    def _no_image(self, channel: str, choice: Any, message: dict[str, Any]) -> ProviderError:
        reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        native = choice.get("native_finish_reason") if isinstance(choice, dict) else None
        said = message.get("content") if isinstance(message.get("content"), str) else ""
        if reason == "content_filter":
            return ContentBlocked(f"the upstream's safety filter refused the image "
                                  f"({native or reason})")
        if said.strip() or message.get("refusal"):
            return NoImage(f"upstream {channel} answered without an image (finish_reason "
                           f"{reason or 'unset'}): {self._said(said or message['refusal'])}")
        return UpstreamUnavailable(f"upstream {channel} returned no image"
                                   + (f" (finish_reason {reason})" if reason else ""))

    def _said(self, text: object) -> str:
        return self.scrub(str(text or "").strip())[:300] or "no message"

    def classify(self, channel: str, response: http.UpstreamResponse, body: Any
                 ) -> ProviderError:
        status = response.status
        err = body.get("error") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        message = self._said(err.get("message")) if err else f"HTTP {status}"
        if status == 403:
            meta = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
            reasons = meta.get("reasons") if isinstance(meta.get("reasons"), list) else []
            why = ", ".join(str(r)[:60] for r in reasons[:5])
            return ContentBlocked(f"{message}" + (f" ({why})" if why else ""))
        if status == 402:
            return QuotaExhausted(f"upstream {channel} is out of credits (HTTP 402): {message}")
        return http.classify(channel, response, self.scrub, auth_hint=f"; check {self.key_env}")

    async def aclose(self) -> None:
        await self.client.aclose()

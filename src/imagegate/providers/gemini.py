"""Google Gemini image models (generateContent), the upstream of the nano-banana family."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from imagegate.providers import http
from imagegate.providers.base import (
    ContentBlocked,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    UpstreamAuthError,
    UpstreamUnavailable,
)

if TYPE_CHECKING:  # providers take the config object, but never import the core
    from imagegate.core.registry import UpstreamConfig

SAFETY = {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
          "RECITATION", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"}


def _get(part: Mapping[str, Any], camel: str, snake: str) -> Any:
    return part.get(camel, part.get(snake))


class GeminiProvider:
    def __init__(self, name: str, config: UpstreamConfig,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.base_url = (config.base_url or "https://generativelanguage.googleapis.com"
                         ).rstrip("/")
        self.api_key = config.api_key(environ)
        self.key_env = config.api_key_env or "GEMINI_API_KEY"
        self.client = http.make_client(config.timeout, config.max_connections,
                                       {"user-agent": "imagegate"})

    def body(self, request: ImageRequest) -> dict[str, Any]:
        image_config: dict[str, Any] = {}
        if request.aspect_ratio:
            image_config["aspectRatio"] = request.aspect_ratio
        if request.options.get("image_size") and request.image_size:
            image_config["imageSize"] = request.image_size
        config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
        if image_config:
            config["imageConfig"] = image_config
        return {"contents": [{"role": "user", "parts": [{"text": request.prompt}]}],
                "generationConfig": config}

    async def generate(self, request: ImageRequest) -> ImageResult:
        if not self.api_key:
            raise UpstreamAuthError(f"upstream {self.name} has no API key: set {self.key_env}")
        calls = [asyncio.ensure_future(self._one(request)) for _ in range(request.n)]
        try:
            results = await asyncio.gather(*calls)
        except BaseException:
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            raise
        usage: dict[str, int] = {}
        for _, one_usage in results:
            for key, value in one_usage.items():
                if isinstance(value, int):
                    usage[key] = usage.get(key, 0) + value
        return ImageResult(images=[img for img, _ in results], usage=usage or None,
                           upstream=f"{self.name}/{request.upstream_model}")

    async def _one(self, request: ImageRequest) -> tuple[GeneratedImage, dict[str, Any]]:
        url = f"{self.base_url}/v1beta/models/{request.upstream_model}:generateContent"
        try:
            response = await self.client.post(url, json=self.body(request),
                                              headers={"x-goog-api-key": self.api_key or ""})
        except httpx.HTTPError as e:
            raise http.transport_error(self.name, e) from None
        if response.status_code != 200:
            raise http.classify(self.name, response, auth_hint=f"; check {self.key_env}")
        payload = http.json_body(response)
        if not isinstance(payload, dict):
            raise UpstreamUnavailable(f"upstream {self.name} sent a body that is not JSON")
        feedback = payload.get("promptFeedback") or {}
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            raise ContentBlocked(f"the prompt was blocked ({feedback['blockReason']})")
        candidates = payload.get("candidates") or []
        if not candidates or not isinstance(candidates[0], dict):
            raise UpstreamUnavailable(f"upstream {self.name} sent no candidates")
        candidate = candidates[0]
        reason = candidate.get("finishReason")
        parts = (candidate.get("content") or {}).get("parts") or []
        for part in parts:
            if not isinstance(part, dict) or part.get("thought"):
                continue  # thinking output, including draft images, is not the answer
            inline = _get(part, "inlineData", "inline_data")
            if isinstance(inline, dict) and _get(inline, "data", "data"):
                data = http.decode_b64(self.name, inline["data"])
                mime = await http.checked_image(self.name, data)
                usage = payload.get("usageMetadata")
                return (GeneratedImage(data, mime, None),
                        usage if isinstance(usage, dict) else {})
        if reason in SAFETY:
            raise ContentBlocked(f"the image was blocked by the upstream's safety filter "
                                 f"({reason})")
        raise UpstreamUnavailable(f"upstream {self.name} returned no image"
                                  + (f" (finishReason {reason})" if reason else ""))

    async def aclose(self) -> None:
        await self.client.aclose()

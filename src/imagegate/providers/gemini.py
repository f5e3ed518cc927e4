"""Google Gemini image models (generateContent), the upstream of the nano-banana family."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from imagegate.providers import http
from imagegate.providers.base import (
    ContentBlocked,
    EditRequest,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)

if TYPE_CHECKING:  # providers take the config object, but never import the core
    from imagegate.core.routing.registry import UpstreamConfig

# finishReasons that mean "the model refused": SPEC 6 counts NO_IMAGE among the safety
# blocks, and IMAGE_OTHER is how image models decline without naming a policy. A retry
# would be refused again (and billed upstream), so these end as 403 forbidden at once.
SAFETY = {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
          "RECITATION", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "NO_IMAGE",
          "IMAGE_OTHER"}


# Google's limit on a generateContent request with inline data (the Gemini API's image
# understanding guide: "the total request size is less than 20MB")
MAX_INLINE_REQUEST = 20 * 1024 * 1024


def _get(part: Mapping[str, Any], camel: str, snake: str) -> Any:
    return part.get(camel, part.get(snake))


class GeminiProvider:
    def __init__(self, name: str, config: UpstreamConfig,
                 environ: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.base_url = http.strip_version(
            config.base_url or "https://generativelanguage.googleapis.com", "/v1beta", "/v1")
        self.api_key = config.api_key(environ)
        self.scrub = http.Scrubber(self.api_key, self.base_url)
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
        # an edit's inputs go first, each an inlineData part, then the instruction
        parts: list[dict[str, Any]] = [
            {"inlineData": {"mimeType": image.mime_type, "data": image.b64}}
            for image in getattr(request, "images", ())]
        parts.append({"text": request.prompt})
        return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}

    async def edit(self, request: EditRequest) -> ImageResult:
        """Gemini edits through generateContent itself: the inputs ride in the parts."""
        inline = sum(len(image.b64) for image in request.images)
        if inline > MAX_INLINE_REQUEST - len(request.prompt) * 4 - 4096:
            raise UpstreamRejected(
                f"the {len(request.images)} input images are {inline / 1e6:.1f} MB as base64; "
                f"Gemini takes at most {MAX_INLINE_REQUEST / 1e6:.0f} MB in one request: "
                "send smaller or fewer images")
        return await self.generate(request)

    async def generate(self, request: ImageRequest) -> ImageResult:
        if not self.api_key:
            raise UpstreamAuthError(f"upstream {self.name}/{request.upstream_model} has no API "
                                    f"key: set {self.key_env}")
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
        channel = f"{self.name}/{request.upstream_model}"  # what messages name, never the URL
        url = f"{self.base_url}/v1beta/models/{request.upstream_model}:generateContent"
        try:
            response = await self.client.post(url, json=self.body(request),
                                              headers={"x-goog-api-key": self.api_key or ""})
        except http.TransportError as e:
            raise http.transport_error(channel, e) from None
        if response.status != 200:
            raise http.classify(channel, response, self.scrub, auth_hint=f"; check {self.key_env}")
        payload = http.json_body(response)
        if not isinstance(payload, dict):
            raise UpstreamUnavailable(f"upstream {channel} sent a body that is not JSON")
        feedback = payload.get("promptFeedback") or {}
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            raise ContentBlocked(self._explain("the prompt was blocked", feedback["blockReason"],
                                               feedback.get("blockReasonMessage")))
        candidates = payload.get("candidates") or []
        if not candidates or not isinstance(candidates[0], dict):
            raise UpstreamUnavailable(f"upstream {channel} sent no candidates")
        candidate = candidates[0]
        reason = candidate.get("finishReason")
        parts = (candidate.get("content") or {}).get("parts") or []
        for part in parts:
            if not isinstance(part, dict) or part.get("thought"):
                continue  # thinking output, including draft images, is not the answer
            inline = _get(part, "inlineData", "inline_data")
            if isinstance(inline, dict) and _get(inline, "data", "data"):
                data = http.decode_b64(channel, inline["data"])
                mime = await http.checked_image(channel, data)
                usage = payload.get("usageMetadata")
                return (GeneratedImage(data, mime, None),
                        usage if isinstance(usage, dict) else {})
        if reason in SAFETY:
            raise ContentBlocked(self._explain("the upstream's safety filter refused the image",
                                               reason, candidate.get("finishMessage")))
        raise UpstreamUnavailable(f"upstream {channel} returned no image"
                                  + (f" (finishReason {reason})" if reason else ""))

    def _explain(self, what: str, reason: object, message: object) -> str:
        """Google's own explanation helps the user rephrase; it is upstream text, so scrubbed."""
        text = f"{what} ({reason})"
        if isinstance(message, str) and message.strip():
            text += f": {self.scrub(message.strip())[:300]}"
        return text

    async def aclose(self) -> None:
        await self.client.aclose()

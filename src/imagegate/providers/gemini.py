"""Google Gemini image models (generateContent), the upstream of the nano-banana family."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from imagegate.providers import gemini_stream, http
from imagegate.providers.base import (
    ContentBlocked,
    EditRequest,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    NoImage,
    ProviderError,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from imagegate.providers.streaming import StreamEvent

if TYPE_CHECKING:  # providers take the config object, but never import the core
    from imagegate.core.routing.registry import UpstreamConfig

# finishReasons that mean "the model refused": SPEC 6 counts NO_IMAGE among the safety
# blocks, and IMAGE_OTHER is how image models decline without naming a policy. A retry
# would be refused again (and billed upstream), so these end as 403 forbidden at once.
SAFETY = {"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
          "RECITATION", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "NO_IMAGE",
          "IMAGE_OTHER"}
# "the model stopped for another reason": no policy named, and the next try may draw
UNEXPLAINED = {"OTHER"}


# Google's limit on a generateContent request with inline data (the Gemini API's image
# understanding guide: "the total request size is less than 20MB")
MAX_INLINE_REQUEST = 20 * 1024 * 1024


def _get(part: Mapping[str, Any], camel: str, snake: str) -> Any:
    return part.get(camel, part.get(snake))


class GeminiProvider:
    """Gemini's image models make one image per call (candidateCount > 1 is refused)."""

    several_per_call = False

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
        if request.n > 1:  # only with `fan_out: false`; image models refuse it today
            config["candidateCount"] = request.n
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

    def stream(self, request: ImageRequest) -> AsyncIterator[StreamEvent]:
        """streamGenerateContent (SPEC section 8); an edit's inputs ride in the parts."""
        return gemini_stream.stream(self, request)

    async def generate(self, request: ImageRequest) -> ImageResult:
        """One generateContent call: one image per candidate."""
        channel = f"{self.name}/{request.upstream_model}"  # what messages name, never the URL
        headers = await self.auth_headers(channel)
        try:
            response = await self.client.post(self.endpoint(request), json=self.body(request),
                                              headers=headers)
        except http.TransportError as e:
            raise http.transport_error(channel, e) from None
        if response.status != 200:
            raise self.classify(channel, response)
        payload = http.json_body(response)
        if not isinstance(payload, dict):
            raise UpstreamUnavailable(f"upstream {channel} sent a body that is not JSON")
        feedback = payload.get("promptFeedback") or {}
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            raise ContentBlocked(self._explain("the prompt was blocked", feedback["blockReason"],
                                               feedback.get("blockReasonMessage")))
        candidates = [c for c in payload.get("candidates") or [] if isinstance(c, dict)]
        if not candidates:
            raise UpstreamUnavailable(f"upstream {channel} sent no candidates")
        images = [await self._image(channel, c) for c in candidates[:max(1, request.n)]]
        usage = payload.get("usageMetadata")
        return ImageResult(images=images, usage=usage if isinstance(usage, dict) else None,
                           upstream=channel)

    def endpoint(self, request: ImageRequest) -> str:
        return f"{self.base_url}/v1beta/models/{request.upstream_model}:generateContent"

    async def auth_headers(self, channel: str) -> dict[str, str]:
        if not self.api_key:
            raise UpstreamAuthError(f"upstream {channel} has no API key: set {self.key_env}")
        return {"x-goog-api-key": self.api_key}

    def classify(self, channel: str, response: http.UpstreamResponse) -> ProviderError:
        return http.classify(channel, response, self.scrub, auth_hint=f"; check {self.key_env}")

    async def _image(self, channel: str, candidate: dict[str, Any]) -> GeneratedImage:
        reason = candidate.get("finishReason")
        parts = (candidate.get("content") or {}).get("parts") or []
        said: list[str] = []
        for part in parts:
            if not isinstance(part, dict) or part.get("thought"):
                continue  # thinking output, including draft images, is not the answer
            inline = _get(part, "inlineData", "inline_data")
            if isinstance(inline, dict) and _get(inline, "data", "data"):
                data, mime = await http.b64_image(channel, inline["data"])
                return GeneratedImage(data, mime, None)
            if isinstance(part.get("text"), str) and part["text"].strip():
                said.append(part["text"].strip())
        if reason in SAFETY:
            raise ContentBlocked(self._explain("the upstream's safety filter refused the image",
                                               reason, candidate.get("finishMessage")))
        if said or reason in UNEXPLAINED:
            # the model answered in words (a refusal, a question) or stopped for a reason
            # it does not name: worth one more try, and the client learns what it said
            text = " ".join(said) or candidate.get("finishMessage")
            raise NoImage(self._explain(f"upstream {channel} answered without an image",
                                        f"finishReason {reason or 'unset'}", text))
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

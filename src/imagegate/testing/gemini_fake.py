"""A fake Gemini API (`POST /v1beta/models/{model}:generateContent`) for image models.

It is as strict as Google's proto-JSON front end (unknown fields are errors, camelCase or
snake_case accepted), returns Google's published output sizes, and reproduces the quirks a
gateway must handle: thought parts to skip, safety blocks delivered as HTTP 200.

``streamGenerateContent?alt=sse`` sends the answer as Server-Sent Events ``data: <chunk>``
(googleapis/python-genai ``_api_client.py`` strips ``data: `` line by line), one part per
chunk, the last with ``finishReason`` and ``usageMetadata`` (no alt: one JSON array). Gemini
3 Pro Image thinks in up to two interim images, ``thought: true`` parts (the Gemini API's
image generation guide, "thinking process"): a streamed answer has two.

Edits are generateContent calls whose parts carry the input images as ``inlineData``
(``{mimeType, data}``, base64) beside the text (the Gemini API's image generation guide,
"image editing"; its image understanding guide: inline data for requests under 20MB in
all, PNG, JPEG, WEBP, HEIC or HEIF). The fake decodes every input and refuses what Google
refuses: bad base64 (the proto's "Base64 decoding failed"), a MIME type that is no image,
bytes that are no image, a payload over 20 MiB ("Request payload size exceeds the limit:
20971520 bytes."). With no aspectRatio the output takes the first input's nearest ratio.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from typing import Any

import orjson

from imagegate.testing import pictures
from imagegate.testing.gemini_wire import (
    GOOGLE_HTML,
    IMAGE_SIZES,
    JSON_TYPE,
    MAX_PAYLOAD,
    MODELS,
    PATH,
    STATUS,
    GeminiError,
    inline_image,
    nearest,
    proto_object,
)
from imagegate.testing.records import Fault, RecordedRequest, Response
from imagegate.testing.server import FakeServer
from imagegate.testing.streams import gemini_chunks


class FakeGemini(FakeServer):
    """Speaks generateContent for gemini-2.5-flash-image and the gemini-3 image previews."""

    kind = "gemini"
    server_header = "scaffolding on HTTPServer2"
    retry_after_header = False

    def __init__(self, api_key: str = "gm-test", *, host: str = "127.0.0.1", port: int = 0,
                 latency: float = 0.0, image_format: str = "png") -> None:
        super().__init__(api_key, host=host, port=port, latency=latency)
        self.image_format = image_format  # what inlineData carries: png | jpeg | webp

    def _error(self, exc: GeminiError) -> Response:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message, "status": exc.status}
        if exc.details:
            error["details"] = exc.details
        return Response(exc.code, orjson.dumps({"error": error}), [("vary", "Origin")], JSON_TYPE)

    def error_response(self, status: int, fault: Fault) -> Response:
        """Google's error body. A 429 is shaped like AI Studio's: no Retry-After header, the
        delay in a RetryInfo detail and the violated quota in a QuotaFailure detail."""
        name, message = STATUS.get(status, ("UNKNOWN", f"HTTP {status}"))
        details: list[dict[str, Any]] = []
        if status == 429:
            quota = fault.quota_id or "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
            message = ("You exceeded your current quota, please check your plan and billing "
                       "details. For more information on this error, head to: "
                       "https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your "
                       "current usage, head to: https://ai.dev/rate-limit. \n* Quota exceeded "
                       "for metric: generativelanguage.googleapis.com/"
                       "generate_content_free_tier_requests, limit: 10")
            if fault.retry_after is not None:
                message += f"\nPlease retry in {fault.retry_after:g}s."
            details += [
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [
                    {"description": "Learn more about Gemini API quotas",
                     "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/"
                                    "generate_content_free_tier_requests",
                     "quotaId": quota, "quotaDimensions": {"location": "global"},
                     "quotaValue": "10"}]}]
        if fault.retry_after is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": f"{fault.retry_after:g}s"})
        return self._error(GeminiError(status, fault.message or message, fault.code or name,
                                       details or None))

    def html_page(self, status: int) -> bytes:
        reason = "Server Error" if status >= 500 else "Client Error"
        return GOOGLE_HTML.format(status=status, reason=reason, text="The server encountered "
                                   "a temporary error and could not complete your request.<p>"
                                   "Please try again in 30 seconds.").encode()

    def _not_found_page(self, path: str) -> Response:
        text = f"The requested URL <code>{path}</code> was not found on this server."
        page = GOOGLE_HTML.format(status=404, reason="Not Found", text=text)
        return Response(404, page.encode(), [], "text/html; charset=UTF-8")

    def _check_auth(self, request: RecordedRequest) -> GeminiError | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return GeminiError(403, "Method doesn't allow unregistered callers (callers without "
                               "established identity). Please use API Key or other form of API "
                               "consumer identity to call this API.")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            return GeminiError(400, "API key not valid. Please pass a valid API key.", details=[
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com",
                 "metadata": {"service": "generativelanguage.googleapis.com"}}])
        return None

    async def handle(self, request: RecordedRequest, fault: Fault | None) -> Response:
        match = PATH.match(request.path)
        if match is None or request.method != "POST":
            return self._not_found_page(request.path)
        problem = self._check_auth(request)
        if problem is not None:
            return self._error(problem)
        model = match.group(1)
        if model not in MODELS:
            return self._error(GeminiError(404, f"models/{model} is not found for API version "
                                           "v1beta, or is not supported for generateContent. "
                                           "Call ListModels to see the list of available models "
                                           "and their supported methods."))
        if len(request.body) > MAX_PAYLOAD:
            return self._error(GeminiError(400, "Request payload size exceeds the limit: "
                                           f"{MAX_PAYLOAD} bytes."))
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return self._error(GeminiError(400, "Invalid JSON payload received. Unexpected "
                                           "token."))
        try:
            prompt, modalities, size, inputs = await self.run_sync(self._validate, model, body)
        except GeminiError as exc:
            return self._error(exc)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        streamed = match.group(2) == "streamGenerateContent"
        payload = await self.run_sync(self._generate, model, prompt, modalities, size,
                                      fault or Fault(), inputs, 2 if streamed else 1)
        if not streamed:
            return Response(200, payload, [("vary", "Origin")], JSON_TYPE)
        chunks = gemini_chunks(orjson.loads(payload))
        if request.query.get("alt") != "sse":  # without alt=sse: one JSON array
            return Response(200, orjson.dumps(chunks), [("vary", "Origin")], JSON_TYPE)
        frames = [b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks]
        return Response(200, b"", [("vary", "Origin")], "text/event-stream", stream=self.events(
            frames, fault))

    # ----- validation -------------------------------------------------------------------
    def _validate(self, model: str, raw: Any
                  ) -> tuple[str, list[str], tuple[int, int, str], list[tuple[int, int, str]]]:
        """The prompt, modalities, output size and inputs (width, height, digest)."""
        body = proto_object(raw, "", "")
        contents = body.get("contents")
        if not contents:
            raise GeminiError(400, "* GenerateContentRequest.contents: contents is not "
                              "specified\n")
        if not isinstance(contents, list):
            raise GeminiError(400, "Invalid JSON payload received. Expected a list at "
                              "'contents'.")
        texts: list[str] = []
        inputs: list[tuple[int, int, str]] = []
        for i, item in enumerate(contents):
            content = proto_object(item, "content", f"contents[{i}]")
            parts = content.get("parts")
            if not isinstance(parts, list) or not parts:
                raise GeminiError(400, f"* GenerateContentRequest.contents[{i}].parts: "
                                  "contents.parts must not be empty.\n")
            for j, raw_part in enumerate(parts):
                part = proto_object(raw_part, "part", f"contents[{i}].parts[{j}]")
                text = part.get("text")
                if text is not None and not isinstance(text, str):
                    raise GeminiError(400, f"Invalid value at 'contents[{i}].parts[{j}].text' "
                                      f"(TYPE_STRING), {orjson.dumps(text).decode()}")
                if text and text.strip() and not part.get("thought"):
                    texts.append(text)
                if part.get("inlineData") is not None:
                    inputs.append(inline_image(part["inlineData"],
                                                f"contents[{i}].parts[{j}].inline_data"))
        if not texts:
            raise GeminiError(400, "* GenerateContentRequest.contents: a text part with the "
                              "prompt is required.\n")
        config = proto_object(body.get("generationConfig") or {}, "generationConfig",
                         "generation_config")
        modalities = config.get("responseModalities") or ["TEXT", "IMAGE"]
        if not isinstance(modalities, list):
            raise GeminiError(400, "Invalid JSON payload received. Expected a list at "
                              "'generation_config.response_modalities'.")
        for k, value in enumerate(modalities):
            if value not in ("TEXT", "IMAGE", "AUDIO"):
                raise GeminiError(400, f"Invalid value at 'generation_config.response_modalities"
                                  f"[{k}]' (type.googleapis.com/google.ai.generativelanguage."
                                  f"v1beta.GenerationConfig.Modality), "
                                  f"{orjson.dumps(value).decode()}")
        if "AUDIO" in modalities:
            raise GeminiError(400, "Model does not support the requested response modalities: "
                              "audio")
        count = config.get("candidateCount")
        if isinstance(count, int) and count > 1:
            raise GeminiError(400, f"Multiple candidates is not enabled for models/{model}")
        image_config = proto_object(config.get("imageConfig") or {}, "imageConfig",
                               "generation_config.image_config")
        return " ".join(texts), modalities, self._size(model, image_config, inputs), inputs

    def _size(self, model: str, config: dict[str, Any],
              inputs: list[tuple[int, int, str]] | None = None) -> tuple[int, int, str]:
        table = MODELS[model]
        ratio = config.get("aspectRatio") or (nearest(table, *inputs[0][:2]) if inputs
                                              else "1:1")
        if ratio not in table:
            raise GeminiError(400, f"* GenerateContentRequest.generation_config.image_config."
                              f"aspect_ratio: Unsupported aspect ratio {ratio!r}. Supported "
                              f"values: {', '.join(table)}.\n")
        image_size = config.get("imageSize")
        if image_size is not None and model == "gemini-2.5-flash-image":
            raise GeminiError(400, "* GenerateContentRequest.generation_config.image_config."
                              "image_size: image_size is not supported for this model.\n")
        image_size = image_size or "1K"
        if image_size not in IMAGE_SIZES:
            raise GeminiError(400, f"* GenerateContentRequest.generation_config.image_config."
                              f"image_size: Unsupported image size {image_size!r}. Supported "
                              "values: 1K, 2K, 4K.\n")
        width, height = table[ratio]
        scale = IMAGE_SIZES[image_size]
        return width * scale, height * scale, image_size

    # ----- generation (runs in the executor) --------------------------------------------
    def _generate(self, model: str, prompt: str, modalities: list[str],
                  size: tuple[int, int, str], fault: Fault,
                  inputs: list[tuple[int, int, str]] | None = None, drafts: int = 1) -> bytes:
        prompt_tokens = max(1, (len(prompt) + 3) // 4)
        envelope: dict[str, Any] = {"modelVersion": model,
                                    "responseId": secrets.token_urlsafe(16)}
        if fault.block_reason:
            return orjson.dumps({
                "promptFeedback": {"blockReason": fault.block_reason},
                "usageMetadata": {"promptTokenCount": prompt_tokens,
                                  "totalTokenCount": prompt_tokens}, **envelope})
        thinking = model.startswith("gemini-3")
        parts: list[dict[str, Any]] = []
        if thinking:
            parts.append({"text": f"**Composing the image**\n\nI'm planning a picture of "
                          f"{prompt[:60]}, deciding on layout and colours.", "thought": True})
        if thinking and model == "gemini-3-pro-image-preview" and "IMAGE" in modalities:
            for k in range(drafts):
                draft = pictures.render_b64(256, 256, "png", f"draft|{prompt}|{k}",
                                            f"draft {k + 1}")
                parts.append({"inlineData": {"mimeType": "image/png", "data": draft},
                              "thought": True})
        if "TEXT" in modalities:
            parts.append({"text": f"Sure! Here is an image of {prompt[:80]}."})
        width, height, image_size = size
        image_tokens = 0
        candidate: dict[str, Any] = {"finishReason": "STOP", "index": 0}
        if fault.safety:
            candidate["finishReason"] = fault.safety
            candidate["finishMessage"] = ("Unable to show the generated image. The image was "
                                          "filtered out because it violated Google's "
                                          "Generative AI Prohibited Use policy.")
            parts = [p for p in parts if "inlineData" not in p]
            if fault.safety in ("NO_IMAGE", "OTHER", "IMAGE_OTHER"):
                parts.append({"text": "I'm unable to create that image. Try another prompt."})
                candidate["content"] = {"role": "model", "parts": parts}
        elif fault.text_only is not None:  # image models sometimes answer with words only
            parts.append({"text": fault.text_only})
        elif "IMAGE" in modalities:
            fmt = self.image_format
            edited = f"\nedit of {len(inputs)}" if inputs else ""
            seed = f"{model}|{prompt}" + (f"|{inputs[0][2]}" if inputs else "")
            render_args = (width, height, fmt, seed, f"{model}\n{width}x{height}{edited}",
                           False, fault.image_bytes)
            data = (pictures.truncated_b64(pictures.render(*render_args)) if fault.truncated_b64
                    else pictures.render_b64(*render_args))
            image_part: dict[str, Any] = {"inlineData": {"mimeType": pictures.mime_type(fmt),
                                                         "data": data}}
            if thinking:
                image_part["thoughtSignature"] = secrets.token_urlsafe(24)
            parts.append(image_part)
            image_tokens = 1290 if not thinking else (2000 if image_size == "4K" else 1120)
        if "content" not in candidate and not fault.safety:
            candidate = {"content": {"role": "model", "parts": parts}, **candidate}
        text_tokens = sum(len(p.get("text", "")) // 4 for p in parts if not p.get("thought"))
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": image_tokens + text_tokens,
            "totalTokenCount": prompt_tokens + image_tokens + text_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        }
        if image_tokens:
            usage["candidatesTokensDetails"] = [{"modality": "IMAGE",
                                                 "tokenCount": image_tokens}]
        if thinking:
            usage["thoughtsTokenCount"] = 180
            usage["totalTokenCount"] += 180
        return orjson.dumps({"candidates": [candidate], "usageMetadata": usage, **envelope})

"""A fake OpenRouter chat-completions API serving Gemini's image models.

From OpenRouter's documentation: image generation is ``POST /api/v1/chat/completions`` with
``modalities`` including ``"image"`` ("Image Generation" guide); the images come back in
``choices[0].message.images[]`` as ``{"type": "image_url", "image_url": {"url": "data:
image/png;base64,..."}}`` beside any text in ``content``; ``image_config`` carries
``aspect_ratio`` (Gemini's ratios) and ``image_size`` (1K/2K/4K, the Gemini 3 models);
input images are ``image_url`` content parts (data URLs here). Errors (the "Errors" page)
are ``{"error": {"code": <status>, "message", "metadata"?}}`` with that HTTP status: 400,
401, 402 (no credits), 403 (moderation flagged the input: ``metadata.reasons`` and
``flagged_input``), 408, 429, 502, 503. ``finish_reason`` is normalized (``stop``,
``content_filter``...) with the model's own in ``native_finish_reason``.

Faults: ``status`` (with ``retry_after``: a Retry-After header), ``code="moderation"`` on
403, ``safety`` (an answer with no image, finish_reason content_filter), ``text_only``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import orjson

from imagegate.testing import pictures
from imagegate.testing.gemini_wire import IMAGE_SIZES, MODELS
from imagegate.testing.records import Fault, RecordedRequest, Response, json_response
from imagegate.testing.server import FakeServer

ROUTED = {f"google/{model}": model for model in MODELS}
_DATA_URL = re.compile(r"^data:(image/[\w.+-]+);base64,(.*)$", re.S)
_MESSAGES = {400: "Bad Request", 401: "No auth credentials found", 402: "Insufficient "
             "credits. Add more using https://openrouter.ai/settings/credits",
             403: "Input flagged by moderation", 408: "Request timed out",
             429: "Rate limit exceeded: limit_rpm/google/gemini-2.5-flash-image",
             500: "Internal Server Error", 502: "Provider returned error",
             503: "No available model provider that meets your routing requirements"}


class RouterError(Exception):
    def __init__(self, status: int, message: str, metadata: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(message)
        self.status, self.message, self.metadata = status, message, metadata


def error_body(status: int, message: str, metadata: dict[str, Any] | None = None) -> Response:
    err: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        err["metadata"] = metadata
    return json_response(status, {"error": err})


class FakeOpenRouter(FakeServer):
    kind = "openrouter"
    server_header = "cloudflare"

    def error_response(self, status: int, fault: Fault) -> Response:
        metadata = None
        if status == 403 or fault.code == "moderation":
            metadata = {"reasons": ["violence"], "flagged_input": "...",
                        "provider_name": "Google", "model_slug": "google/gemini-2.5-flash-image"}
        return error_body(status, fault.message or _MESSAGES.get(status, f"HTTP {status}"),
                          metadata)

    async def handle(self, request: RecordedRequest, fault: Fault | None) -> Response:
        if request.path != "/api/v1/chat/completions" or request.method != "POST":
            return error_body(404, "Not Found")
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return error_body(401, "No auth credentials found")
        if not hmac.compare_digest(key.strip().encode(), self.api_key.encode()):
            return error_body(401, "User not found.")
        try:
            model, prompt, size, inputs, modalities = await self.run_sync(
                self._validate, request.body)
        except RouterError as e:
            return error_body(e.status, e.message, e.metadata)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        payload = await self.run_sync(self._answer, model, prompt, size, inputs, modalities,
                                      fault or Fault())
        return Response(200, payload)

    def _validate(self, raw: bytes) -> tuple[str, str, tuple[int, int], list[str], list[str]]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RouterError(400, "Invalid JSON body") from None
        if not isinstance(body, dict):
            raise RouterError(400, "Invalid JSON body")
        model = body.get("model")
        if model not in ROUTED:
            raise RouterError(400, f"{model} is not a valid model ID")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RouterError(400, "Input required: specify \"prompt\" or \"messages\"")
        texts: list[str] = []
        inputs: list[str] = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for part in parts if isinstance(parts, list) else []:
                if not isinstance(part, dict):
                    raise RouterError(400, "Invalid content part")
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "image_url":
                    inputs.append(_input_digest((part.get("image_url") or {}).get("url")))
                else:
                    raise RouterError(400, f"Invalid content part type {part.get('type')!r}")
        if not any(t.strip() for t in texts):
            raise RouterError(400, "Input required: the messages hold no text")
        modalities = body.get("modalities") or ["text"]
        if not isinstance(modalities, list) or set(modalities) - {"image", "text"}:
            raise RouterError(400, f"Invalid modalities: {modalities!r}")
        table = MODELS[ROUTED[model]]
        config = body.get("image_config") or {}
        ratio = config.get("aspect_ratio", "1:1") if isinstance(config, dict) else "1:1"
        if ratio not in table:
            raise RouterError(400, f"Invalid aspect_ratio {ratio!r}; supported: "
                              f"{', '.join(table)}")
        scale = 1
        image_size = config.get("image_size") if isinstance(config, dict) else None
        if image_size is not None:
            if image_size not in IMAGE_SIZES or ROUTED[model] == "gemini-2.5-flash-image":
                raise RouterError(400, f"Invalid image_size {image_size!r} for {model}")
            scale = IMAGE_SIZES[image_size]
        width, height = table[ratio]
        return model, " ".join(texts), (width * scale, height * scale), inputs, modalities

    def _answer(self, model: str, prompt: str, size: tuple[int, int], inputs: list[str],
                modalities: list[str], fault: Fault) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None,
                                   "reasoning": None}
        finish, native = "stop", "STOP"
        images: list[dict[str, Any]] = []
        if fault.safety:
            finish, native = "content_filter", fault.safety
        elif fault.text_only is not None:
            message["content"] = fault.text_only
        elif "image" in modalities:
            seed = f"{model}|{prompt}" + (f"|{inputs[0]}" if inputs else "")
            label = f"{model}\n{size[0]}x{size[1]}" + (f"\nedit of {len(inputs)}"
                                                        if inputs else "")
            args = (size[0], size[1], "png", seed, label, False, fault.image_bytes)
            data = (pictures.truncated_b64(pictures.render(*args)) if fault.truncated_b64
                    else pictures.render_b64(*args))
            images.append({"type": "image_url", "index": 0,
                           "image_url": {"url": f"data:image/png;base64,{data}"}})
        else:
            message["content"] = f"Here is a description of {prompt[:60]}."
        if images:
            message["images"] = images
        prompt_tokens = max(1, len(prompt) // 4) + 258 * len(inputs)
        completion = 1290 if images else 12
        return orjson.dumps({
            "id": f"gen-{int(time.time())}-{secrets.token_urlsafe(12)}", "provider": "Google",
            "model": model, "object": "chat.completion", "created": int(time.time()),
            "choices": [{"logprobs": None, "finish_reason": finish,
                         "native_finish_reason": native, "index": 0, "message": message}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}})


def _input_digest(url: Any) -> str:
    match = _DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise RouterError(400, "image_url must be a data URL (data:image/...;base64,...)")
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise RouterError(400, "image_url holds malformed base64") from None
    return hashlib.sha256(data).hexdigest()

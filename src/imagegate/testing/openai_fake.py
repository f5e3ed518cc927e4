"""A fake api.openai.com Images API (`POST /v1/images/generations` and `/v1/images/edits`)
over real sockets.

dall-e models answer with expiring signed links by default, like the real service's Azure
blob URLs, so the fake also serves `GET /files/...` and refuses expired or forged links.
Edits are multipart and checked as OpenAI checks them (see ``openai_edit_rules``); the
edited image's colours follow the first input's digest, so a test can tell it arrived.

``stream: true`` answers with Server-Sent Events as OpenAI streams images: each
``event: <type>`` + ``data: <json>``, the types and fields of openai-python's
ImageGenPartialImageEvent / ImageGenCompletedEvent (edits: ImageEditPartialImageEvent /
ImageEditCompletedEvent): ``type``, ``b64_json``, ``created_at``, ``size``, ``quality``,
``background``, ``output_format``, ``partial_image_index`` on partials, ``usage`` on
completed; ``partial_images`` 0-3 (0: the completed event only, as the SDK documents).
Tests can hold a stream between its events (``hold_streams``) and cut it (``stream_cut``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from imagegate.testing import pictures
from imagegate.testing.multipart import FormError, parse_form
from imagegate.testing.openai_edit_rules import EditParams, input_image_tokens, validate_edit
from imagegate.testing.openai_rules import ImageParams, OpenAIError, usage, validate
from imagegate.testing.records import (
    Fault,
    RecordedRequest,
    Response,
    json_response,
    new_request_id,
)
from imagegate.testing.server import FakeServer

_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", None, "Not found."),
    429: ("requests", "rate_limit_exceeded",
          "Rate limit reached for images per minute. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. "
          "Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    504: ("server_error", None, "Gateway timeout."),
}
_KNOWN_CODES: dict[str, tuple[str, str]] = {
    "moderation_blocked": ("image_generation_user_error", "Your request was rejected by the "
                           "safety system. If you believe this is an error, contact us at "
                           "help.openai.com and include the request ID."),
    "content_policy_violation": ("invalid_request_error", "Your request was rejected as a "
                                 "result of our safety system. Your prompt may contain text "
                                 "that is not allowed by our safety system."),
    "model_not_found": ("invalid_request_error", "The model does not exist or you do not "
                        "have access to it."),
    "insufficient_quota": ("insufficient_quota", "You exceeded your current quota, please "
                           "check your plan and billing details."),
    "billing_hard_limit_reached": ("invalid_request_error", "Billing hard limit has been "
                                   "reached"),
}
_AZURE_ERROR = (
    '<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\n'
    "RequestId:{request_id}\nTime:{now}</Message>{detail}</Error>"
)


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def mask_key(key: str) -> str:
    """OpenAI shows a key's first and last characters only; never echo it whole."""
    if len(key) <= 8:
        return key[:2] + "***"
    return f"{key[:5]}{'*' * min(len(key) - 9, 40)}{key[-4:]}"


def _iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class FakeOpenAI(FakeServer):
    """Speaks OpenAI's Images API for gpt-image-2/1/1-mini and dall-e-3/2."""

    kind = "openai"
    server_header = "cloudflare"

    def __init__(self, api_key: str = "sk-test", *, host: str = "127.0.0.1", port: int = 0,
                 latency: float = 0.0, url_ttl: float = 3600.0) -> None:
        super().__init__(api_key, host=host, port=port, latency=latency)
        self.url_ttl = url_ttl
        self._secret = secrets.token_bytes(32)
        self._files: dict[str, tuple[bytes, str, float]] = {}
        self._files_lock = threading.Lock()

    # ----- errors ---------------------------------------------------------------------------
    def _headers(self) -> list[tuple[str, str]]:
        return [("x-request-id", f"req_{new_request_id()}"), ("openai-version", "2020-10-01"),
                ("openai-processing-ms", "42")]

    def _error(self, exc: OpenAIError) -> Response:
        return json_response(exc.status, exc.body(), self._headers())

    def error_response(self, status: int, fault: Fault) -> Response:
        type_, code, message = _STATUS_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None,
                     f"HTTP {status}"))
        if fault.code is not None:
            code = fault.code
            type_, message = _KNOWN_CODES.get(fault.code, (type_, message))
        return self._error(OpenAIError(status, fault.message or message, None, code, type_))

    def _check_auth(self, request: RecordedRequest) -> OpenAIError | None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            return OpenAIError(401, "You didn't provide an API key. You need to provide your API "
                               "key in an Authorization header using Bearer auth (i.e. "
                               "Authorization: Bearer YOUR_KEY), or as the password field (with "
                               "blank username) if you're accessing the API from your browser "
                               "and are prompted for a username and password. You can obtain an "
                               "API key from https://platform.openai.com/account/api-keys.")
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return OpenAIError(401, f"Incorrect API key provided: {mask_key(token.strip())}. "
                               "You can find your API key at "
                               "https://platform.openai.com/account/api-keys.", None,
                               "invalid_api_key")
        return None

    # ----- routing --------------------------------------------------------------------------
    async def handle(self, request: RecordedRequest, fault: Fault | None) -> Response:
        if request.path.startswith("/files/") and request.method in ("GET", "HEAD"):
            return self._serve_file(request)
        if request.path == "/v1/images/edits" and request.method == "POST":
            return await self._edit(request, fault)
        if request.path != "/v1/images/generations" or request.method != "POST":
            return self._error(OpenAIError(404, f"Invalid URL ({request.method} "
                                           f"{request.path})"))
        problem = self._check_auth(request)
        if problem is not None:
            return self._error(problem)
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return self._error(OpenAIError(
                400, "We could not parse the JSON body of your request. (HINT: This likely "
                "means you aren't using your HTTP library correctly. The OpenAI API expects a "
                "JSON payload, but what was sent was not valid JSON. If you have trouble "
                "figuring out how to fix this, please contact us through our help center at "
                "help.openai.com.)"))
        try:
            params = validate(body)
        except OpenAIError as exc:
            return self._error(exc)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if params.stream:
            frames = await self.run_sync(self._stream_frames, params, fault or Fault(), None)
            return self._streamed(frames, fault)
        payload = await self.run_sync(self._generate, params, fault or Fault(),
                                      self._public_base(request))
        return Response(200, payload, self._headers())

    async def _edit(self, request: RecordedRequest, fault: Fault | None) -> Response:
        problem = self._check_auth(request)
        if problem is not None:
            return self._error(problem)
        try:
            form = parse_form(request.body, request.headers.get("content-type", ""))
        except FormError:
            return self._error(OpenAIError(
                400, "Invalid Content-Type header: expected multipart/form-data with a "
                "boundary for this endpoint.", None, "invalid_content_type"))
        try:
            edit = await self.run_sync(validate_edit, form)
        except OpenAIError as exc:
            return self._error(exc)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if edit.params.stream:
            frames = await self.run_sync(self._stream_frames, edit.params, fault or Fault(), edit)
            return self._streamed(frames, fault)
        payload = await self.run_sync(self._generate, edit.params, fault or Fault(),
                                      self._public_base(request), edit)
        return Response(200, payload, self._headers())

    def _public_base(self, request: RecordedRequest) -> str:
        """Links use the Host the client dialled, so they work across Docker networks too."""
        host = request.headers.get("host")
        return f"http://{host}" if host else self.base_url

    # ----- generation (runs in the executor) ------------------------------------------------
    def _generate(self, params: ImageParams, fault: Fault, public_base: str,
                  edit: EditParams | None = None) -> bytes:
        gpt_image = params.rules.family == "gpt-image"
        transparent = params.background == "transparent"
        data: list[dict[str, Any]] = []
        label = f"{params.model}\n{params.size}"
        source = ""
        if edit is not None:
            source = "|" + hashlib.sha256(edit.images[0].data).hexdigest()
            label += f"\nedit of {len(edit.images)}" + (" with mask" if edit.mask else "")
        for index in range(params.n):
            seed = f"{params.model}|{params.prompt}|{index}{source}"
            render_args = (params.width, params.height, params.output_format, seed,
                           label, transparent, fault.image_bytes)
            item: dict[str, Any] = {}
            if params.response_format == "url" or fault.url_response:
                blob = pictures.render(*render_args)
                if fault.truncated_b64:
                    blob = blob[: len(blob) // 2]
                item["url"] = self.publish(blob, params.output_format, public_base)
            elif fault.truncated_b64:
                item["b64_json"] = pictures.truncated_b64(pictures.render(*render_args))
            else:
                item["b64_json"] = pictures.render_b64(*render_args)
            if params.model == "dall-e-3":
                item["revised_prompt"] = f"A detailed image of: {params.prompt}"
            data.append(item)
        payload: dict[str, Any] = {"created": int(time.time())}
        if gpt_image:
            payload.update(background=params.background, output_format=params.output_format,
                           quality=params.quality, size=params.size)
        payload["data"] = data
        if gpt_image:
            payload["usage"] = usage(params)
            if edit is not None:
                tokens = input_image_tokens(edit.images)
                payload["usage"]["input_tokens"] += tokens
                payload["usage"]["total_tokens"] += tokens
                payload["usage"]["input_tokens_details"]["image_tokens"] = tokens
        return orjson.dumps(payload)

    # ----- streaming (runs in the executor) -------------------------------------------------
    def _streamed(self, frames: list[bytes], fault: Fault | None) -> Response:
        return Response(200, b"", self._headers(), "text/event-stream; charset=utf-8",
                        stream=self.events(frames, fault))

    def _stream_frames(self, params: ImageParams, fault: Fault, edit: EditParams | None
                       ) -> list[bytes]:
        """``stream: true``: per image, ``partial_images`` partial events, then its completed
        event (with that image's usage); edits name their events ``image_edit.*``."""
        kind = "image_edit" if edit is not None else "image_generation"
        source = "|" + hashlib.sha256(edit.images[0].data).hexdigest() if edit else ""
        fields = {"background": params.background, "output_format": params.output_format,
                  "quality": params.quality, "size": params.size}
        one = replace(params, n=1)
        frames: list[bytes] = []
        for index in range(params.n):
            seed = f"{params.model}|{params.prompt}|{index}{source}"
            for partial in range(params.partial_images):
                picture = pictures.render_b64(params.width, params.height, params.output_format,
                                              f"{seed}|partial {partial}",
                                              f"{params.model}\npartial {partial + 1}",
                                              params.background == "transparent")
                frames.append(_event(f"{kind}.partial_image", {
                    "type": f"{kind}.partial_image", "b64_json": picture,
                    "created_at": int(time.time()), **fields, "partial_image_index": partial}))
            picture = pictures.render_b64(params.width, params.height, params.output_format,
                                          seed, f"{params.model}\n{params.size}",
                                          params.background == "transparent", fault.image_bytes)
            spent = usage(one)
            if edit is not None:
                tokens = input_image_tokens(edit.images)
                spent["input_tokens"] += tokens
                spent["total_tokens"] += tokens
                spent["input_tokens_details"]["image_tokens"] = tokens
            frames.append(_event(f"{kind}.completed", {
                "type": f"{kind}.completed", "b64_json": picture,
                "created_at": int(time.time()), **fields, "usage": spent}))
        return frames

    # ----- expiring links -------------------------------------------------------------------
    def _sign(self, name: str, expiry: str) -> str:
        digest = hmac.new(self._secret, f"r\n{expiry}\n/{name}".encode(), hashlib.sha256)
        return base64.b64encode(digest.digest()).decode("ascii")

    def publish(self, data: bytes, fmt: str, public_base: str | None = None) -> str:
        """Store bytes and return a signed link valid for ``url_ttl`` seconds."""
        now = time.time()
        expires = now + self.url_ttl
        name = f"img-{secrets.token_urlsafe(18)}.{fmt}"
        with self._files_lock:
            for key in [k for k, v in self._files.items() if v[2] < now - 60]:
                del self._files[key]
            self._files[name] = (data, pictures.mime_type(fmt), expires)
        query = {"st": _iso(now - 300), "se": _iso(expires), "sp": "r", "sv": "2021-08-06",
                 "sr": "b", "rscd": "inline", "rsct": pictures.mime_type(fmt),
                 "sig": self._sign(name, _iso(expires))}
        return f"{public_base or self.base_url}/files/{name}?{urlencode(query)}"

    def _blob_error(self, status: int, code: str, message: str, detail: str = "") -> Response:
        body = _AZURE_ERROR.format(
            code=code, message=message, request_id=new_request_id(),
            now=_iso(time.time()),
            detail=f"<AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail>"
            if detail else "")
        return Response(status, body.encode(), [("x-ms-error-code", code)], "application/xml")

    def _serve_file(self, request: RecordedRequest) -> Response:
        name = request.path.removeprefix("/files/")
        expiry, sig = request.query.get("se", ""), request.query.get("sig", "")
        if not expiry or not sig or not hmac.compare_digest(sig, self._sign(name, expiry)):
            return self._blob_error(
                403, "AuthenticationFailed", "Server failed to authenticate the request. Make "
                "sure the value of Authorization header is formed correctly including the "
                "signature.", "Signature did not match. String to sign used was r")
        try:
            expires = datetime.fromisoformat(expiry).timestamp()
        except ValueError:
            expires = 0.0
        now = time.time()
        if now > expires:
            return self._blob_error(
                403, "AuthenticationFailed", "Server failed to authenticate the request. Make "
                "sure the value of Authorization header is formed correctly including the "
                "signature.", f"Signature not valid in the specified time frame: Start "
                f"[{request.query.get('st', '')}] - Expiry [{expiry}] - Current [{_iso(now)}]")
        with self._files_lock:
            entry = self._files.get(name)
        if entry is None:
            return self._blob_error(404, "BlobNotFound", "The specified blob does not exist.")
        data, mime, _ = entry
        return Response(200, data, [
            ("etag", f'"0x{hashlib.sha1(data).hexdigest()[:15].upper()}"'),
            ("x-ms-blob-type", "BlockBlob"), ("content-disposition", "inline"),
            ("x-ms-request-id", new_request_id())], mime)

"""Per-family parameter rules (SPEC section 2): validate a raw request body and adapt it.

Every violation raises :class:`BadRequest` naming the field and what it accepts, so a
client never has to guess what went wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from imagegate.core.errors import BadRequest, NotImplementedApi
from imagegate.core.routing.registry import ModelConfig, Registry
from imagegate.core.text import json_type, shown, storable

PROMPT_LIMITS = {"dalle": 4000, "gpt-image": 32000, "nano-banana": 32000}
DALLE_SIZES = ("1024x1024", "1792x1024", "1024x1792")
GPT_IMAGE_DEFAULT_SIZES = ("1024x1024", "1536x1024", "1024x1536")
NANO_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
NANO_FIXED = {"1024x1024": "1:1", "512x512": "1:1", "256x256": "1:1",
              "1792x1024": "16:9", "1024x1792": "9:16"}
FORMATS = ("png", "jpeg", "webp")
MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
MAX_TRACE_ID = 128
_TRACE_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # it goes back in a header: visible ASCII
# What each family reads from a request body; :func:`validate` bounds every one of them.
COMMON_FIELDS = ("model", "prompt", "n", "size", "response_format", "user", "callback_url",
                 "async", "trace_id")
FAMILY_FIELDS = {
    "dalle": (*COMMON_FIELDS, "quality", "style"),
    "gpt-image": (*COMMON_FIELDS, "quality", "background", "output_format",
                  "output_compression", "moderation", "stream", "partial_images"),
    "nano-banana": (*COMMON_FIELDS, "output_format", "output_compression", "stream",
                    "partial_images"),
}

# an edit keeps its own field beside its family's; its images are stored apart and the task
# refers to them under "inputs" (core/edits)
EDIT_FIELDS = ("input_fidelity",)
RECORD_FIELDS = frozenset(
    {*(f for fields in FAMILY_FIELDS.values() for f in fields), *EDIT_FIELDS, "inputs"})

@dataclass(frozen=True, slots=True)
class Params:
    """A validated request: what the family honours, with defaults filled in."""

    model: str
    family: str
    prompt: str
    n: int
    size: str | None
    width: int | None
    height: int | None
    aspect_ratio: str | None
    image_size: str | None
    quality: str | None
    style: str | None
    background: str | None
    output_format: str
    output_compression: int | None
    moderation: str | None
    user: str | None
    response_format: str
    callback_url: str | None
    is_async: bool
    trace_id: str | None
    stream: bool = False  # answered as Server-Sent Events (SPEC section 8)
    partial_images: int = 0

    @property
    def runs_async(self) -> bool:
        """Answered at once with a task id, and run by a worker (see also wants_async)."""
        return self.is_async or self.callback_url is not None

    @property
    def mime_type(self) -> str:
        return MIME[self.output_format]


def _choice(body: dict[str, Any], field: str, allowed: tuple[str, ...], default: str | None
            ) -> str | None:
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest(f"{field} must be one of {', '.join(allowed)}; got {shown(value)}")
    return value


def _integer(body: dict[str, Any], field: str, low: int, high: int, default: int | None
             ) -> int | None:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        if low == high:
            raise BadRequest(f"{field} must be {low} for this model; got {shown(value)}")
        raise BadRequest(f"{field} must be an integer from {low} to {high}; got {shown(value)}")
    if not low <= value <= high:
        if low == high:
            raise BadRequest(f"{field} must be {low} for this model; got {value}")
        raise BadRequest(f"{field} must be from {low} to {high}; got {value}")
    return value


def _string(body: dict[str, Any], field: str, max_len: int) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string; got {json_type(value)}")
    if len(value) > max_len:
        raise BadRequest(f"{field} must be at most {max_len} characters; got {len(value)}")
    return value


def stored_request(body: dict[str, Any], family: str, extra: tuple[str, ...] = ()
                   ) -> dict[str, Any]:
    """What a task keeps of a validated body: the fields its family reads (plus ``extra``,
    an operation's own), so unknown fields, which are ignored, are not stored, returned by
    every task query, or carried by the queue. Validation bounds each kept value."""
    return {field: body[field] for field in (*FAMILY_FIELDS[family], *extra)
            if body.get(field) is not None}


def wants_async(body: dict[str, Any]) -> bool:
    """Answered at once and run by a worker (an accepted request, already validated)."""
    return body.get("async") is True or bool(body.get("callback_url"))


def is_trace_id(value: object) -> bool:
    return isinstance(value, str) and _TRACE_ID.match(value) is not None


def parse_size(size: str) -> tuple[int, int] | None:
    m = _SIZE.match(size)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_gpt_image_2_size(width: int, height: int) -> str | None:
    """Why a WxH is not acceptable to gpt-image-2, or None when it is."""
    if width % 16 or height % 16:
        return "both sides must be multiples of 16"
    if max(width, height) > 3840:
        return "the longest side must be at most 3840"
    if max(width, height) > 3 * min(width, height):
        return "the aspect ratio must be at most 3:1"
    if not 655_360 <= width * height <= 8_294_400:
        return "the image must have 655,360 to 8,294,400 pixels"
    return None


def nearest_ratio(width: int, height: int, ratios: tuple[str, ...]) -> str:
    """The supported ratio closest to WxH, compared on a log scale so 2:1 and 1:2 are symmetric."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        a, b = ratio.split(":")
        return abs(math.log(int(a) / int(b)) - target)

    return min(ratios, key=distance)


def image_size_tier(width: int, height: int) -> str:
    """nano-banana-2/pro output tier: the smallest whose long side covers the request."""
    long_side = max(width, height)
    return "1K" if long_side <= 1024 else "2K" if long_side <= 2048 else "4K"


def _size(model: ModelConfig, body: dict[str, Any]) -> tuple[str | None, int | None, int | None]:
    raw = body.get("size")
    if raw is not None and not isinstance(raw, str):
        raise BadRequest(f"size must be a string like 1024x1024; got {shown(raw)}")
    if model.family == "dalle":
        size = _choice(body, "size", DALLE_SIZES, DALLE_SIZES[0])
        assert size is not None
        w, h = parse_size(size)  # type: ignore[misc]
        return size, w, h
    if model.family == "gpt-image":
        if raw is None or raw == "auto":
            return "auto", None, None
        if model.sizes == "flexible":
            dims = parse_size(raw)
            if dims is None:
                raise BadRequest(f"size must be auto or WxH (e.g. 1536x1024); got {shown(raw)}")
            why = check_gpt_image_2_size(*dims)
            if why:
                raise BadRequest(
                    f"size {raw} is not supported by {model.name}: {why} (allowed: auto, or WxH "
                    "with sides multiples of 16, longest side <= 3840, ratio <= 3:1, "
                    "655,360-8,294,400 pixels)"
                )
            return raw, dims[0], dims[1]
        allowed = ("auto", *(model.sizes or GPT_IMAGE_DEFAULT_SIZES))
        _choice(body, "size", allowed, None)
        w, h = parse_size(raw)  # type: ignore[misc]
        return raw, w, h
    # nano-banana: any WxH, mapped to a ratio
    if raw is None:
        return "1024x1024", 1024, 1024
    dims = parse_size(raw)
    if dims is None or max(dims) > 8192:
        raise BadRequest(
            f"size must be WxH with sides up to 8192 (e.g. 1024x1024, 1792x1024); got {shown(raw)}"
        )
    return raw, dims[0], dims[1]


def validate(registry: Registry, body: dict[str, Any]) -> tuple[ModelConfig, Params]:
    name = body.get("model")
    available = ", ".join(registry.models)
    if name is None or name == "":
        raise BadRequest(f"model is required; available: {available}")
    if not isinstance(name, str):
        raise BadRequest(f"model must be a string (one of {available}); got {shown(name)}")
    model = registry.model(name)
    if model is None:
        raise NotImplementedApi(f"model {shown(name)} is not supported; available: {available}")
    family = model.family

    prompt = body.get("prompt")
    if prompt is None:
        raise BadRequest("prompt is required")
    if not isinstance(prompt, str):
        raise BadRequest(f"prompt must be a string; got {json_type(prompt)}")
    if not prompt.strip():
        raise BadRequest("prompt must not be empty")
    limit = PROMPT_LIMITS[family]
    if len(prompt) > limit:
        raise BadRequest(f"prompt must be at most {limit} characters for {name}; got {len(prompt)}")

    size, width, height = _size(model, body)
    n = _integer(body, "n", 1, 1 if family == "dalle" else 10, 1)
    response_format = _choice(body, "response_format", ("url", "b64_json"), "url")
    user = _string(body, "user", 256)
    trace_id = _string(body, "trace_id", MAX_TRACE_ID)
    if trace_id is not None and not is_trace_id(trace_id):
        raise BadRequest(f"trace_id must be 1 to {MAX_TRACE_ID} visible ASCII characters "
                         "(no spaces or control characters)")
    callback_url = _string(body, "callback_url", 2048)
    if callback_url is not None and not storable(callback_url):
        raise BadRequest("callback_url must not contain NUL characters")
    is_async = body.get("async", False)
    if is_async is None:
        is_async = False
    if not isinstance(is_async, bool):
        raise BadRequest(f"async must be true or false; got {shown(is_async)}")

    stream, partial_images = _stream(model, body, is_async, callback_url)
    quality = style = background = moderation = aspect_ratio = image_size = None
    output_format, compression = "png", None
    if family == "dalle":
        quality = _choice(body, "quality", ("standard", "hd"), "standard")
        style = _choice(body, "style", ("vivid", "natural"), "vivid")
    elif family == "gpt-image":
        quality = _choice(body, "quality", ("low", "medium", "high", "auto"), "auto")
        background = _choice(body, "background", ("transparent", "opaque", "auto"), "auto")
        output_format = _choice(body, "output_format", FORMATS, "png") or "png"
        compression = _integer(body, "output_compression", 0, 100, None)
        moderation = _choice(body, "moderation", ("low", "auto"), "auto")
        if background == "transparent" and output_format not in ("png", "webp"):
            raise BadRequest(
                f"background transparent needs output_format png or webp; got {output_format}"
            )
    else:
        output_format = _choice(body, "output_format", FORMATS, "png") or "png"
        compression = _integer(body, "output_compression", 0, 100, None)
        assert width is not None and height is not None
        ratios = NANO_RATIOS + model.extra_ratios
        aspect_ratio = NANO_FIXED.get(size or "") or nearest_ratio(width, height, ratios)
        image_size = image_size_tier(width, height)

    _served(model, {"background": background, "quality": quality, "style": style,
                    "output_format": output_format, "moderation": moderation, "size": size})
    return model, Params(
        model=name, family=family, prompt=prompt, n=n or 1, size=size, width=width,
        height=height, aspect_ratio=aspect_ratio, image_size=image_size, quality=quality,
        style=style, background=background, output_format=output_format,
        output_compression=compression, moderation=moderation, user=user,
        response_format=response_format or "url", callback_url=callback_url,
        is_async=is_async, trace_id=trace_id, stream=stream, partial_images=partial_images,
    )


def _stream(model: ModelConfig, body: dict[str, Any], is_async: bool,
            callback_url: str | None) -> tuple[bool, int]:
    """``stream`` and ``partial_images`` (SPEC section 8): never ignored, so a client that
    asked for events never gets one JSON answer instead."""
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest(f"stream must be true or false; got {shown(stream)}")
    partial = _integer(body, "partial_images", 0, 3, 0) or 0
    if not stream:
        return False, partial
    if model.family == "dalle":
        raise NotImplementedApi(f"stream is not supported by {model.name} (as with OpenAI's "
                                "dall-e-3): send the request without stream, or use "
                                "gpt-image-2 for partial images")
    if is_async or callback_url is not None:
        raise BadRequest("stream cannot be combined with async or callback_url: a stream "
                         "answers on this connection; leave one of them out")
    return True, partial


def _served(model: ModelConfig, values: dict[str, Any]) -> None:
    """A value every channel's upstream model refuses (``unsupported``) is the client's
    400 here, before anything is charged, rather than an upstream error later."""
    refused = [channel.refuses(values) for channel in model.channels]
    if all(refused):
        field = refused[0]
        assert field is not None
        served = ", ".join(dict.fromkeys(c.model for c in model.channels))
        raise BadRequest(
            f"{field} {shown(values[field])} is not supported by {model.name}: it is served by "
            f"{served}, which does not accept it; choose another {field}")

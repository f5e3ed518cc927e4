"""The rules an edit adds to a generation's (SPEC sections 2 and 7).

An edit's fields are a generation's, checked by the same per-family rules, plus
``input_fidelity``; ``stream`` and ``partial_images`` are a generation's too (SPEC section 8).
Multipart sends every field as text.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from imagegate.core.errors import BadRequest
from imagegate.core.routing.params import (
    NANO_RATIOS,
    Params,
    image_size_tier,
    nearest_ratio,
    shown,
)
from imagegate.core.routing.registry import ModelConfig

MAX_IMAGES = 16
_INTEGERS = ("n", "output_compression", "partial_images")
_BOOLEANS = ("async", "stream")
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def form_fields(raw: dict[str, str]) -> dict[str, Any]:
    """Multipart fields are text: the numbers and booleans become what JSON would carry,
    with a clear error for a value that is neither."""
    body: dict[str, Any] = dict(raw)
    for name in _INTEGERS:
        if name in body:
            text = body[name].strip()
            try:
                body[name] = int(text)
            except ValueError:
                raise BadRequest(f"{name} must be an integer; got {shown(body[name])}") from None
    for name in _BOOLEANS:
        if name in body:
            text = body[name].strip().lower()
            if text not in _TRUE + _FALSE:
                raise BadRequest(f"{name} must be true or false; got {shown(body[name])}")
            body[name] = text in _TRUE
    return body


def edit_options(model: ModelConfig, body: dict[str, Any], *, has_mask: bool) -> str | None:
    """What an edit adds once the family's generation rules passed: ``input_fidelity``
    (sent for gpt-image only) and the mask rule."""
    fidelity = body.get("input_fidelity")
    if fidelity is not None and fidelity not in ("high", "low"):
        raise BadRequest(f"input_fidelity must be one of high, low; got {shown(fidelity)}")
    if has_mask and model.family == "nano-banana":
        raise BadRequest(f"mask is not supported by {model.name}: Gemini image models take no "
                         "mask; leave it out and say in the prompt what to change")
    return fidelity if model.family == "gpt-image" else None


def fit_to_input(model: ModelConfig, params: Params, body: dict[str, Any], width: int,
                 height: int) -> Params:
    """nano-banana with no size: the supported aspect ratio nearest to the first input's
    (the 1K tier), rather than a square the client never asked for."""
    if model.family != "nano-banana" or body.get("size") is not None:
        return params
    ratio = nearest_ratio(width, height, NANO_RATIOS + model.extra_ratios)
    return dataclasses.replace(params, size=None, width=None, height=None, aspect_ratio=ratio,
                               image_size=image_size_tier(1024, 1024))

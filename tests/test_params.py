"""Parameter rules per family (SPEC section 2), checked on the validator directly."""

from __future__ import annotations

from typing import Any

import pytest

from imagegate.core.errors import BadRequest, NotImplementedApi
from imagegate.core.routing.params import check_gpt_image_2_size, nearest_ratio, validate
from imagegate.core.routing.registry import load_registry

REGISTRY = load_registry()


def params(**body: Any):  # noqa: ANN201
    return validate(REGISTRY, {"prompt": "p", **body})[1]


@pytest.mark.parametrize(("size", "ratio"), [
    ("1024x1024", "1:1"), ("512x512", "1:1"), ("256x256", "1:1"),
    ("1792x1024", "16:9"), ("1024x1792", "9:16"),
    ("1536x1024", "3:2"), ("1024x1536", "2:3"), ("2048x1024", "16:9"),
    ("1200x900", "4:3"), ("900x1200", "3:4"), ("1000x800", "5:4"), ("800x1000", "4:5"),
    ("2100x900", "21:9"), ("1920x1080", "16:9"), ("1000x1000", "1:1"),
])
def test_nano_banana_ratio(size: str, ratio: str) -> None:
    assert params(model="nano-banana", size=size).aspect_ratio == ratio


def test_nano_banana_2_extra_ratios() -> None:
    assert params(model="nano-banana-2", size="1024x4096").aspect_ratio == "1:4"
    assert params(model="nano-banana-2", size="8192x1024").aspect_ratio == "8:1"
    # the first model lacks them and falls back to the nearest of its own
    assert params(model="nano-banana", size="1024x4096").aspect_ratio == "9:16"


@pytest.mark.parametrize(("size", "tier"), [
    ("1024x1024", "1K"), ("512x512", "1K"), ("1536x1024", "2K"), ("2048x2048", "2K"),
    ("4096x2304", "4K"),
])
def test_image_size_tier(size: str, tier: str) -> None:
    assert params(model="nano-banana-pro", size=size).image_size == tier


def test_nano_banana_defaults_and_ignored_fields() -> None:
    p = params(model="nano-banana", quality="bogus", style="bogus", background="bogus")
    assert (p.aspect_ratio, p.size, p.n, p.quality, p.style, p.background) == (
        "1:1", "1024x1024", 1, None, None, None)


def test_nano_banana_honours_n_and_formats() -> None:
    p = params(model="nano-banana", n=4, response_format="b64_json", output_format="webp")
    assert (p.n, p.response_format, p.output_format, p.mime_type) == (
        4, "b64_json", "webp", "image/webp")


def test_dalle_defaults() -> None:
    p = params(model="dall-e-3")
    assert (p.size, p.quality, p.style, p.response_format, p.output_format) == (
        "1024x1024", "standard", "vivid", "url", "png")


def test_gpt_image_defaults() -> None:
    p = params(model="gpt-image-2")
    assert (p.size, p.quality, p.background, p.output_format, p.moderation) == (
        "auto", "auto", "auto", "png", "auto")


@pytest.mark.parametrize(("size", "ok"), [
    ("1024x1024", True), ("3840x2160", True), ("2160x3840", True), ("1024x640", True),
    ("1008x640", False), ("3840x1280", True), ("3856x1280", False), ("1024x1008", True),
    ("1000x1000", False),
    ("816x816", True), ("800x800", False), ("2880x2880", True), ("2896x2896", False),
])
def test_gpt_image_2_size_rule(size: str, ok: bool) -> None:
    w, h = map(int, size.split("x"))
    assert (check_gpt_image_2_size(w, h) is None) is ok


def test_gpt_image_1_sizes() -> None:
    for size in ("auto", "1024x1024", "1536x1024", "1024x1536"):
        assert params(model="gpt-image-1", size=size).size == size
    with pytest.raises(BadRequest):
        params(model="gpt-image-1", size="2048x2048")


def test_integral_float_n_is_accepted() -> None:
    assert params(model="gpt-image-2", n=2.0).n == 2
    with pytest.raises(BadRequest):
        params(model="gpt-image-2", n=2.5)


def test_unknown_model() -> None:
    with pytest.raises(NotImplementedApi):
        params(model="sdxl")


def test_nearest_ratio_is_symmetric() -> None:
    ratios = ("1:1", "2:3", "3:2")
    assert nearest_ratio(3, 2, ratios) == "3:2" and nearest_ratio(2, 3, ratios) == "2:3"


def test_pricing_tiers() -> None:
    dalle = REGISTRY.models["dall-e-3"]
    assert str(dalle.price_per_image("standard", "1024x1024")) == "0.04"
    assert str(dalle.price_per_image("hd", "1024x1024")) == "0.08"
    assert str(dalle.price_per_image("standard", "1792x1024")) == "0.08"
    assert str(dalle.price_per_image("hd", "1024x1792")) == "0.12"
    assert str(REGISTRY.models["nano-banana-pro"].price_per_image(None, "1024x1024")) == "0.35"

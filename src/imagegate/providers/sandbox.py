"""A provider that draws its images locally, so the gateway runs with no upstream keys."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from imagegate.providers import sandbox_stream
from imagegate.providers.base import EditRequest, GeneratedImage, ImageRequest, ImageResult
from imagegate.providers.sandbox_edits import render_edit
from imagegate.providers.streaming import StreamEvent

_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_DEFAULT_SIDE = 1024
# What Gemini's image models return at 1K for each aspect ratio (2K and 4K: twice and four
# times the sides), whatever size was asked for: the sandbox answers the same way.
GEMINI_1K: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672), "1:4": (512, 2048), "4:1": (2048, 512),
    "1:8": (384, 3072), "8:1": (3072, 384)}
GEMINI_SCALE = {"1K": 1, "2K": 2, "4K": 4}
RENDERS_AT_ONCE = 2  # a 4K render holds ~100 MB while it is encoded: bound how many do


def dimensions(request: ImageRequest) -> tuple[int, int]:
    """The size the real upstream would return: Gemini's fixed size for the aspect ratio
    (and, where the channel sends it, the image size tier); otherwise the size asked for,
    which the family's rules already bound (gpt-image-2: at most 8.3 megapixels)."""
    if request.family == "nano-banana":
        width, height = GEMINI_1K.get(request.aspect_ratio or "1:1", GEMINI_1K["1:1"])
        scale = GEMINI_SCALE.get(request.image_size or "1K", 1)
        if not request.options.get("image_size"):
            scale = 1
        return width * scale, height * scale
    if request.width and request.height:
        return request.width, request.height
    return _DEFAULT_SIDE, _DEFAULT_SIDE


@lru_cache(maxsize=64)
def render(prompt: str, label: str, width: int, height: int, fmt: str, transparent: bool,
           quality: int | None, index: int) -> bytes:
    """Deterministic for its arguments: the colour comes from a hash of the prompt."""
    digest = hashlib.sha256(f"{prompt}\0{index}".encode()).digest()
    colour = (digest[0], digest[1], digest[2], 0 if transparent else 255)
    mode = "RGBA" if transparent else "RGB"
    image = Image.new(mode, (width, height), colour if transparent else colour[:3])
    draw = ImageDraw.Draw(image)
    ink = (255, 255, 255, 255) if sum(colour[:3]) < 384 else (0, 0, 0, 255)
    if transparent:
        ink = (digest[3], digest[4], digest[5], 255)
        draw.ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=ink)
    font = ImageFont.load_default(size=max(12, min(width, height) // 24))
    text = f"{label}  {width}x{height}\n{prompt[:200]}"
    draw.multiline_text((max(8, width // 40), max(8, height // 40)), text,
                        fill=ink if not transparent else (0, 0, 0, 255), font=font)
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if fmt in ("jpeg", "webp") and quality is not None:
        options["quality"] = max(1, quality)
    if fmt == "jpeg" and image.mode != "RGB":
        image = image.convert("RGB")
    if fmt == "png":
        options["compress_level"] = 1  # a third of the CPU of the default for flat pictures
    image.save(buf, _PIL_FORMAT[fmt], **options)
    return buf.getvalue()


def _meta(request: ImageRequest, width: int, height: int) -> dict[str, str] | None:
    """What OpenAI's answer says of the image, for the gpt-image models it stands in for."""
    if request.family != "gpt-image":
        return None
    quality = request.quality if request.quality not in (None, "auto") else "medium"
    background = "transparent" if request.background == "transparent" else "opaque"
    return {"size": f"{width}x{height}", "quality": quality, "background": background,
            "output_format": request.output_format}


class SandboxProvider:
    """Renders images with Pillow off the event loop; optional latency mimics a slow upstream."""

    name = "sandbox"
    several_per_call = True

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self._renders = asyncio.Semaphore(RENDERS_AT_ONCE)

    async def generate(self, request: ImageRequest) -> ImageResult:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return await self._generate_now(request)

    def stream(self, request: ImageRequest) -> AsyncIterator[StreamEvent]:
        return sandbox_stream.stream(self, request)

    async def _generate_now(self, request: ImageRequest) -> ImageResult:
        width, height = dimensions(request)
        fmt = request.output_format
        transparent = request.background == "transparent" and fmt in ("png", "webp")
        images = []
        for i in range(request.n):
            async with self._renders:
                data = await asyncio.to_thread(
                    render, request.prompt, request.public_model, width, height, fmt,
                    transparent, request.output_compression, i,
                )
            images.append(GeneratedImage(data=data, mime_type=_MIME[fmt]))
        return ImageResult(images=images, upstream="sandbox", meta=_meta(request, width, height))

    async def edit(self, request: EditRequest) -> ImageResult:
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return await self._edit_now(request)

    async def _edit_now(self, request: EditRequest) -> ImageResult:
        fmt = request.output_format
        inputs = [image.data for image in request.images]
        mask = request.mask.data if request.mask is not None else None
        images = []
        for i in range(request.n):
            data = await asyncio.to_thread(
                render_edit, inputs, mask, request.prompt if i == 0 else f"{request.prompt} #{i}",
                request.public_model, request.width, request.height, fmt,
                request.output_compression)
            images.append(GeneratedImage(data=data, mime_type=_MIME[fmt]))
        width, height = request.width, request.height
        if not (width and height) and request.images:
            width, height = request.images[0].width, request.images[0].height
        return ImageResult(images=images, upstream="sandbox",
                           meta=_meta(request, width or _DEFAULT_SIDE, height or _DEFAULT_SIDE))

    async def aclose(self) -> None:
        return None

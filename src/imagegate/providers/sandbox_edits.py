"""The sandbox's edits: the first input, visibly changed, so a test (or a person trying the
gateway without keys) can tell the inputs reached the upstream.

The first image is cropped to the output size; the mask's fully transparent pixels are
painted in a colour taken from the prompt; the other inputs appear as thumbnails along the
bottom; a caption band names the prompt.
"""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw, ImageFont, ImageOps

_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
LONG_SIDE = 1024  # output size when the request names none: the first input's shape


def output_size(width: int | None, height: int | None, first: tuple[int, int]
                ) -> tuple[int, int]:
    if width and height:
        return width, height
    w, h = first
    scale = LONG_SIDE / max(w, h)
    return max(16, round(w * scale)), max(16, round(h * scale))


def prompt_colour(prompt: str) -> tuple[int, int, int, int]:
    digest = hashlib.sha256(f"edit\0{prompt}".encode()).digest()
    return digest[0], digest[1], digest[2], 255


def render_edit(images: list[bytes], mask: bytes | None, prompt: str, label: str,
                width: int | None, height: int | None, fmt: str, quality: int | None) -> bytes:
    """Deterministic for its arguments; blocking (run it in a thread)."""
    with Image.open(io.BytesIO(images[0])) as first:
        base = first.convert("RGBA")
    size = output_size(width, height, base.size)
    canvas = ImageOps.fit(base, size, Image.Resampling.BILINEAR)
    if mask is not None:
        with Image.open(io.BytesIO(mask)) as m:
            alpha = m.convert("RGBA").getchannel("A").resize(size, Image.Resampling.NEAREST)
        edit_here = alpha.point(lambda a: 255 if a == 0 else 0)
        canvas.paste(Image.new("RGBA", size, prompt_colour(prompt)), mask=edit_here)
    thumb = max(16, min(size) // 6)
    for i, data in enumerate(images[1:]):
        with Image.open(io.BytesIO(data)) as other:
            small = ImageOps.fit(other.convert("RGBA"), (thumb, thumb))
        canvas.paste(small, (8 + i * (thumb + 4), size[1] - thumb - 8 - size[1] // 10))
    band = max(12, size[1] // 10)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, size[1] - band, size[0], size[1]), fill=(0, 0, 0, 200))
    font = ImageFont.load_default(size=max(10, band // 2))
    draw.text((8, size[1] - band + band // 5), f"{label} edit: {prompt[:120]}",
              fill=(255, 255, 255, 255), font=font)
    out = io.BytesIO()
    image = canvas if fmt != "jpeg" else canvas.convert("RGB")
    options: dict[str, object] = {}
    if fmt in ("jpeg", "webp") and quality is not None:
        options["quality"] = max(1, quality)
    image.save(out, _PIL_FORMAT[fmt], **options)
    return out.getvalue()

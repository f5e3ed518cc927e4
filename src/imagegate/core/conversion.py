"""Image bytes: recognising what an upstream sent and converting it to what the client asked for."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from imagegate.formats import sniff_mime

FORMAT_OF_MIME = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
_PIL = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def _convert(data: bytes, fmt: str, compression: int | None) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if fmt == "jpeg" and image.mode not in ("RGB", "L"):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            image = flat
        elif fmt in ("png", "webp") and image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")
        out = io.BytesIO()
        options: dict[str, object] = {}
        if fmt in ("jpeg", "webp") and compression is not None:
            options["quality"] = max(1, compression)
        image.save(out, _PIL[fmt], **options)
        return out.getvalue()


async def ensure_format(data: bytes, mime: str, fmt: str, compression: int | None
                        ) -> tuple[bytes, str]:
    """Return the image in ``fmt``; Pillow work runs in a thread to keep the event loop free."""
    actual = sniff_mime(data) or mime
    if FORMAT_OF_MIME.get(actual) == fmt:
        return data, actual
    converted = await asyncio.to_thread(_convert, data, fmt, compression)
    return converted, f"image/{fmt}"

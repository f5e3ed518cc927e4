"""An image to edit, checked by its bytes: format, whole file, and decoded size.

The name and content type a client gives are ignored: only the bytes say what a file is.
Every refusal names the image and says why, so a client with sixteen inputs knows which one
to fix. Nothing here is charged for: refusals happen before the task exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO

from PIL import Image

from imagegate.core.errors import BadRequest
from imagegate.formats import sniff_mime

FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
ACCEPTED = "edits take png, jpeg or webp images"
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


@dataclass(frozen=True, slots=True)
class Picture:
    """What the bytes turned out to be."""

    mime_type: str
    width: int
    height: int
    has_alpha: bool

    @property
    def format(self) -> str:
        return FORMATS[self.mime_type]

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _what(head: bytes) -> str:
    """A few words on bytes that are no image, so the client sees what went wrong."""
    if head.startswith(b"%PDF"):
        return "its bytes are a PDF document"
    text = head.decode("utf-8", errors="ignore")  # the cut may split a character
    if not text or not all(c.isprintable() or c.isspace() for c in text):
        return "its bytes are not a known image format"
    if text.lstrip().startswith("<"):
        return "its bytes are HTML or XML"
    return "its bytes are text"


def inspect(file: IO[bytes], size: int, label: str, max_pixels: int) -> Picture:
    """Check one input (blocking: run it in a thread). Raises BadRequest naming ``label``."""
    if size == 0:
        raise BadRequest(f"{label} is empty (0 bytes); {ACCEPTED}")
    file.seek(0)
    head = file.read(64)
    mime = sniff_mime(head)
    if mime is None:
        raise BadRequest(f"{label} is not an image: {_what(head)}; {ACCEPTED}")
    if mime not in FORMATS:
        raise BadRequest(f"{label} is a {mime.removeprefix('image/').upper()} image; {ACCEPTED}")
    fmt = FORMATS[mime]
    try:
        file.seek(0)
        with Image.open(file, formats=[fmt.upper()]) as image:
            width, height = image.size
            _check_pixels(width, height, label, max_pixels)
            has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
            if fmt == "png":
                image.verify()  # every chunk's CRC through IEND: a cut-off file fails
        if fmt != "png":
            file.seek(0)
            with Image.open(file, formats=[fmt.upper()]) as image:
                if fmt == "jpeg":  # decoding at 1/8 scale still reads every byte
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()  # other formats only show truncation when decoded
    except Image.DecompressionBombError as e:
        raise BadRequest(_bomb(label, max_pixels, e)) from None
    except BadRequest:
        raise
    except Exception:  # noqa: BLE001 - any decoding failure means a broken file
        raise BadRequest(f"{label} is a damaged or truncated {fmt} file: it cannot be "
                         "decoded") from None
    return Picture(mime, width, height, has_alpha)


def _bomb(label: str, max_pixels: int, error: Exception) -> str:
    """Pillow's own guard fired first (far over its limit): its message has the count."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(found.group(1)):,} pixels, " if found else ""
    return (f"{label} decodes to {pixels}more than the {max_pixels:,} pixel limit per "
            "image; send a smaller image")


def _check_pixels(width: int, height: int, label: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise BadRequest(f"{label} is {width}x{height}: it decodes to {width * height:,} "
                         f"pixels, more than the {max_pixels:,} pixel limit per image; send a "
                         "smaller image")


def check_mask(mask: Picture, first: Picture, label: str = "mask") -> None:
    """OpenAI's rule: a PNG with an alpha channel whose fully transparent pixels mark what
    to edit, with the first image's dimensions."""
    if mask.format != "png":
        raise BadRequest(f"{label} must be a PNG with an alpha channel; got a {mask.format} "
                         "image")
    if not mask.has_alpha:
        raise BadRequest(f"{label} has no alpha channel: its fully transparent pixels mark "
                         "where to edit, so it must be an RGBA (or grey+alpha) PNG")
    if (mask.width, mask.height) != (first.width, first.height):
        raise BadRequest(f"{label} is {mask.size}; it must have the first image's "
                         f"dimensions, {first.size}")

"""Deterministic, real images for the fake upstreams.

Gateways decode, re-encode and store what upstreams return, so the fakes must hand out
genuine PNG/JPEG/WEBP bytes of exactly the advertised size. Rendering is cached (by size,
format, seed...) because tests ask for the same few images over and over.
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw, ImageFont

CACHE_BUDGET = 512 * 1024 * 1024  # bytes of encoded images and base64 kept for reuse


class _ByteCache:
    """LRU bounded by total size, not count: one 20 MB image must not pin gigabytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._items: OrderedDict[tuple[Any, ...], bytes | str] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> bytes | str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[Any, ...], value: bytes | str) -> None:
        if len(value) > self.budget // 4:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._size += len(value)
            while self._size > self.budget:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)


_cache = _ByteCache(CACHE_BUDGET)
_inflight_guard = threading.Lock()
_inflight: dict[tuple[Any, ...], threading.Lock] = {}

FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


def mime_type(fmt: str) -> str:
    """The Content-Type for one of our output formats ("png", "jpeg", "webp")."""
    return FORMATS[fmt][1]


def _colours(seed: str) -> tuple[tuple[int, int, int], tuple[int, int, int], int]:
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return (digest[0], digest[1], digest[2]), (digest[3], digest[4], digest[5]), digest[6] % 4


def _draw_label(img: Image.Image, label: str, ink: tuple[int, int, int]) -> None:
    if not label:
        return
    width, height = img.size
    size = max(10, min(width, height) // 12)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(img)
    box = draw.multiline_textbbox((0, 0), label, font=font, align="center")
    x = (width - (box[2] - box[0])) // 2
    y = (height - (box[3] - box[1])) // 2
    draw.multiline_text((x, y), label, fill=ink, font=font, align="center")


def _pad_bytes(seed: str, count: int) -> bytes:
    return random.Random(seed).randbytes(count)


def _pad_png(data: bytes, target: int, seed: str) -> bytes:
    """Insert a private ancillary chunk before IEND: decoders must skip it, size grows."""
    missing = target - len(data) - 12
    if missing <= 0:
        return data
    kind = b"fkPd"  # ancillary, private, safe-to-copy
    payload = _pad_bytes(seed, missing)
    chunk = struct.pack(">I", len(payload)) + kind + payload
    chunk += struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    iend = data.rindex(b"IEND") - 4
    return data[:iend] + chunk + data[iend:]


def _pad_jpeg(data: bytes, target: int, seed: str) -> bytes:
    """Add COM segments after SOI (each at most 65,533 bytes of payload)."""
    missing = target - len(data)
    if missing <= 4:
        return data
    pad = _pad_bytes(seed, missing)
    segments = bytearray()
    for start in range(0, len(pad), 65_529):
        piece = pad[start : start + 65_529]
        segments += b"\xff\xfe" + struct.pack(">H", len(piece) + 2) + piece
    return data[:2] + bytes(segments) + data[2:]


def _encode(img: Image.Image, fmt: str, xmp: bytes | None = None) -> bytes:
    out = io.BytesIO()
    if fmt == "png":
        img.save(out, "PNG", compress_level=1)
    elif fmt == "jpeg":
        img.convert("RGB").save(out, "JPEG", quality=85)
    else:
        options: dict[str, object] = {"quality": 80, "method": 0}
        if xmp:
            options["xmp"] = xmp
        img.save(out, "WEBP", **options)
    return out.getvalue()


def _once(key: tuple[Any, ...], produce: Callable[[], bytes | str]) -> bytes | str:
    """Cached, and computed by one thread while the others wait: 300 concurrent requests
    for a new image must not render it 300 times."""
    hit = _cache.get(key)
    if hit is not None:
        return hit
    with _inflight_guard:
        lock = _inflight.setdefault(key, threading.Lock())
    with lock:
        hit = _cache.get(key)
        if hit is None:
            hit = produce()
            _cache.put(key, hit)
    with _inflight_guard:
        if _inflight.get(key) is lock:
            del _inflight[key]
    return hit


def render(
    width: int,
    height: int,
    fmt: str = "png",
    seed: str = "",
    label: str = "",
    transparent: bool = False,
    pad_to: int | None = None,
) -> bytes:
    """A gradient coloured by ``seed`` with ``label`` written on it, encoded as ``fmt``.

    ``transparent`` keeps only a rounded card in the middle opaque (png/webp);
    ``pad_to`` grows the file to roughly that many bytes while keeping it decodable.
    Cached, and computed once per key even under concurrency.
    """
    key = (width, height, fmt, seed, label, transparent, pad_to)
    data = _once(("raw", *key), lambda: _render(*key))
    assert isinstance(data, bytes)
    return data


def _render(
    width: int,
    height: int,
    fmt: str = "png",
    seed: str = "",
    label: str = "",
    transparent: bool = False,
    pad_to: int | None = None,
) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"unsupported format {fmt!r}")
    first, second, turn = _colours(seed)
    mask = Image.linear_gradient("L").rotate(90 * turn).resize((width, height))
    img = Image.composite(Image.new("RGB", (width, height), second),
                          Image.new("RGB", (width, height), first), mask)
    luminance = sum(first) + sum(second)
    _draw_label(img, label, (0, 0, 0) if luminance > 3 * 255 else (255, 255, 255))
    if transparent and fmt != "jpeg":
        alpha = Image.new("L", (width, height), 0)
        inset_x, inset_y = width // 8, height // 8
        ImageDraw.Draw(alpha).rounded_rectangle(
            (inset_x, inset_y, width - inset_x, height - inset_y),
            radius=max(1, min(width, height) // 16), fill=255)
        img.putalpha(alpha)
    data = _encode(img, fmt)
    if pad_to is None or pad_to <= len(data):
        return data
    if fmt == "png":
        return _pad_png(data, pad_to, seed)
    if fmt == "jpeg":
        return _pad_jpeg(data, pad_to, seed)
    return _encode(img, fmt, xmp=_pad_bytes(seed, max(1, pad_to - len(data) - 40)))


def render_b64(
    width: int,
    height: int,
    fmt: str = "png",
    seed: str = "",
    label: str = "",
    transparent: bool = False,
    pad_to: int | None = None,
) -> str:
    """Base64 of :func:`render`, cached separately since encoding 20 MB is not free."""
    key = (width, height, fmt, seed, label, transparent, pad_to)
    text = _once(("b64", *key), lambda: base64.b64encode(render(*key)).decode("ascii"))
    assert isinstance(text, str)
    return text


def truncated_b64(data: bytes) -> str:
    """Valid base64 of the first half of an image: decodes, but not as an image."""
    return base64.b64encode(data[: max(8, len(data) // 2)]).decode("ascii")

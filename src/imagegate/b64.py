"""Base64 for images, with pybase64's SIMD codec.

Every image the gateway hosts passes through base64 at least once (an upstream's
``b64_json`` or ``inlineData``, a ``b64_json`` answer, a data: URI): CPython's binascii
decodes ~290 MB/s here, 14 ms for a 4 MB image, where pybase64 takes 0.25 ms
(bench/RESULTS.md, image path).
"""

from __future__ import annotations

from binascii import Error

import pybase64

__all__ = ["Error", "decode", "encode"]


def decode(data: str | bytes) -> bytes:
    """Strict: only the standard alphabet with correct padding (``validate=True``);
    raises :class:`binascii.Error` otherwise."""
    return pybase64.b64decode(data, validate=True)


def encode(data: bytes) -> str:
    return pybase64.b64encode_as_string(data)

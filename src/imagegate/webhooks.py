"""Signing and verifying callback payloads.

Each callback carries ``X-Imagegate-Signature: t=<unix>,v1=<hex>`` where the hex is
HMAC-SHA256 of ``"<t>.<body>"`` keyed by the credential's webhook secret. Receivers verify
with :func:`verify`; the timestamp bounds replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Imagegate-Signature"


def _bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + _bytes(body),
                   hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes | str, header: str, *, tolerance: float = 300,
           now: float | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` made within ``tolerance`` s.

    ``body`` is the raw request body; a str is taken as its UTF-8 encoding, which is what
    frameworks that decode bodies for you hand over. Never raises on a malformed header."""
    fields: dict[str, list[str]] = {}
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1].encode()
    # bytes, because compare_digest refuses str holding non-ASCII characters
    return any(hmac.compare_digest(expected, v.encode()) for v in fields.get("v1", []))

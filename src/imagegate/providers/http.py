"""What every HTTP upstream needs: a pooled client, error bodies read the same way, safe
downloads, and image bytes checked before anyone stores them."""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import io
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from PIL import Image

from imagegate.providers.base import (
    ContentBlocked,
    ProviderError,
    UpstreamAuthError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from imagegate.providers.pool import ShardedClient

MAX_DOWNLOAD = 50 * 1024 * 1024
MODERATION_CODES = {"moderation_blocked", "content_policy_violation", "content_filter"}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


def make_client(timeout: float, max_connections: int, headers: dict[str, str] | None = None
                ) -> ShardedClient:
    return ShardedClient(timeout, max_connections, headers)


def safe_url(url: str) -> str:
    """A URL fit for a message: no credentials, no query string (signatures live there)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def json_body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def error_of(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from an OpenAI or Google error body, or a description of the page."""
    body = json_body(response)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code")
        if code is None or isinstance(code, int):  # Google puts the HTTP status here
            code = err.get("status") or err.get("type")
        message = str(err.get("message") or "").strip() or f"HTTP {response.status_code}"
        return code, message[:500]
    kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
    return None, f"HTTP {response.status_code} with a {kind} body"


def classify(upstream: str, response: httpx.Response, *, auth_hint: str = "") -> ProviderError:
    """Turn an upstream error response into what the router and core act on."""
    status = response.status_code
    code, message = error_of(response)
    where = f"upstream {upstream}"
    if status in (401, 403) or (status == 400 and "api key" in message.lower()):
        return UpstreamAuthError(f"{where} refused our credentials (HTTP {status}){auth_hint}")
    if code in MODERATION_CODES:
        return ContentBlocked(message)
    if status in (408, 409, 425, 429) or status >= 500:
        return UpstreamUnavailable(f"{where} answered HTTP {status}: {message}",
                                   retry_after=retry_after(response.headers))
    return UpstreamRejected(f"{where} answered HTTP {status}: {message}")


def transport_error(upstream: str, error: httpx.HTTPError) -> ProviderError:
    if isinstance(error, httpx.TimeoutException):
        return UpstreamUnavailable(f"upstream {upstream} timed out ({type(error).__name__})")
    return UpstreamUnavailable(f"upstream {upstream} connection failed ({type(error).__name__})")


def decode_b64(upstream: str, data: Any) -> bytes:
    if not isinstance(data, str) or not data:
        raise UpstreamUnavailable(f"upstream {upstream} sent an empty image")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise UpstreamUnavailable(f"upstream {upstream} sent malformed base64") from None


def _inspect(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format
            image.verify()  # PNG: every chunk's CRC through IEND, a cut-off file fails
        if fmt != "PNG":
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # other formats only show truncation when decoded
        return _MIME.get(fmt or "")
    except Exception:  # noqa: BLE001 - any decoding failure means a broken image
        return None


async def checked_image(upstream: str, data: bytes) -> str:
    """The image's real mime type; raises when the bytes are not a whole image."""
    mime = await asyncio.to_thread(_inspect, data)
    if mime is None:
        raise UpstreamUnavailable(f"upstream {upstream} sent an undecodable or truncated image")
    return mime


async def download(client: ShardedClient, upstream: str, url: str, *,
                   max_bytes: int = MAX_DOWNLOAD, seconds: float = 60.0) -> bytes:
    """Fetch a url-style result: image content type only, size capped, never a redirect loop."""
    shown = safe_url(url)
    try:
        async with client.stream("GET", url, timeout=seconds, follow_redirects=True) as r:
            if r.status_code != 200:
                raise UpstreamUnavailable(
                    f"upstream {upstream} image link {shown} answered HTTP {r.status_code}")
            ctype = r.headers.get("content-type", "")
            if not ctype.startswith("image/"):
                raise UpstreamUnavailable(
                    f"upstream {upstream} image link {shown} is not an image ({ctype or '?'})")
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise UpstreamUnavailable(
                    f"upstream {upstream} image is over the {max_bytes} byte limit")
            chunks, size = [], 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise UpstreamUnavailable(
                        f"upstream {upstream} image is over the {max_bytes} byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as e:
        raise transport_error(upstream, e) from None

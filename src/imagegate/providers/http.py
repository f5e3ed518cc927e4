"""What every HTTP upstream needs: a pooled client, error bodies read the same way, safe
downloads, and image bytes checked before anyone stores them."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import io
import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from PIL import Image

from imagegate import b64
from imagegate.providers.base import (
    ContentBlocked,
    OutOfFiles,
    ProviderError,
    QuotaExhausted,
    UpstreamAuthError,
    UpstreamMisconfigured,
    UpstreamRejected,
    UpstreamUnavailable,
)
from imagegate.providers.client import TransportError, UpstreamClient, UpstreamResponse

MAX_DOWNLOAD = 50 * 1024 * 1024
# images up to this size are decoded and checked on the event loop, larger ones in a thread
INLINE_BYTES = 256 * 1024
LARGE_JSON = 1024 * 1024
# "forbidden": what another imagegate (or the seed's hosted service) says for moderation
MODERATION_CODES = {"moderation_blocked", "content_policy_violation", "content_filter",
                    "forbidden"}
QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"}
AUTH_REASONS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]{1,15}://[^\s\"'<>`]+")
_TOKEN = re.compile(r"(?i)\bbearer\s+[^\s\"',;]+|\b(?:sk|rk|pk|sess)-[\w*.\-]{6,}"
                    r"|\bAIza[\w\-]{20,}|\bya29\.[\w.\-]+")
_PER_DAY = re.compile(r"(?i)per[\s_-]?day")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def make_client(timeout: float, max_connections: int, headers: dict[str, str] | None = None
                ) -> UpstreamClient:
    return UpstreamClient(timeout, max_connections, headers)


def strip_version(base_url: str, *suffixes: str) -> str:
    """``https://api.openai.com/v1`` is how most people write an OpenAI-compatible URL, but
    the providers add the version to their paths themselves."""
    url = base_url.rstrip("/")
    for suffix in suffixes:
        if url.endswith(suffix):
            return url[: -len(suffix)].rstrip("/")
    return url


class Scrubber:
    """Takes our key, the upstream's address and every URL out of text an upstream wrote.

    Upstream messages reach clients and logs; an upstream may echo the key it was sent, a
    masked form of it, or an internal URL (a proxy's, a signed blob link's).
    """

    def __init__(self, api_key: str | None, base_url: str) -> None:
        self.secrets = [api_key] if api_key else []
        self.hosts: list[re.Pattern[str]] = []
        try:
            parts = urlsplit(base_url)
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if host:
            address = re.escape(host) + (f"(?::{port})?" if port else "")
            self.hosts.append(re.compile(rf"(?i)(?<![\w.-]){address}(?![\w-])"))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        text = _URL.sub("<url>", text)
        text = _TOKEN.sub("<redacted>", text)
        for host in self.hosts:
            text = host.sub("<upstream>", text)
        return text


def retry_after(headers: Mapping[str, str]) -> float | None:
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


def json_body(response: UpstreamResponse) -> Any:
    """The body as JSON, or None. Past a megabyte (an image in it) the standard library's
    parser: orjson faults in fresh pages for the whole document on every call, ~1,400 for a
    4 MB image (bench/RESULTS.md), and was the slower of the two on such bodies."""
    content = response.content
    try:
        if len(content) > LARGE_JSON:
            return json.loads(content)
        return orjson.loads(content)
    except (ValueError, RecursionError):  # orjson's errors are ValueErrors too
        return None


def google_details(body: Any, kind: str) -> list[dict[str, Any]]:
    """The ``error.details[]`` entries of one google.rpc type (RetryInfo, QuotaFailure...)."""
    err = body.get("error") if isinstance(body, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, dict)
            and str(d.get("@type", "")).endswith(f"google.rpc.{kind}")]


def retry_delay(body: Any) -> float | None:
    """Gemini sends no Retry-After header: the delay is a RetryInfo detail, "45.8s"."""
    for info in google_details(body, "RetryInfo"):
        delay = info.get("retryDelay")
        if isinstance(delay, str) and (m := _DURATION.match(delay)):
            return float(m.group(1))
        if isinstance(delay, dict):  # the proto's {seconds, nanos} form
            try:
                return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
            except (TypeError, ValueError):
                return None
    return None


def error_of(response: UpstreamResponse, scrub: Scrubber, body: Any = None
             ) -> tuple[str | None, str]:
    """(code, message) from an OpenAI or Google error body, or a description of the page.

    The message is scrubbed before it is cut to length, so no part of a secret survives.
    """
    body = json_body(response) if body is None else body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code")
        if code is None or isinstance(code, int):  # Google puts the HTTP status here
            code = err.get("status") or err.get("type")
        message = scrub(str(err.get("message") or "").strip()) or f"HTTP {response.status}"
        return (str(code) if code is not None else None), message[:500]
    kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
    return None, f"HTTP {response.status} with a {kind} body"


def _bad_key(status: int, message: str, body: Any) -> bool:
    if status in (401, 403):
        return True
    reasons = {d.get("reason") for d in google_details(body, "ErrorInfo")}
    return status == 400 and ("api key" in message.lower() or bool(reasons & AUTH_REASONS))


def _per_day(message: str, body: Any) -> bool:
    """A Gemini quota that resets tomorrow: retrying in seconds only burns the time budget."""
    if _PER_DAY.search(message):
        return True
    for failure in google_details(body, "QuotaFailure"):
        for violation in failure.get("violations") or []:
            if isinstance(violation, dict) and any(
                    _PER_DAY.search(str(violation.get(k, "")))
                    for k in ("quotaId", "quotaMetric", "description")):
                return True
    return False


def classify(channel: str, response: UpstreamResponse, scrub: Scrubber, *,
             auth_hint: str = "") -> ProviderError:
    """Turn an upstream error response into what the router and core act on.

    Moderation is checked first: an imagegate upstream reports it as 403 "forbidden", which
    must not read as a credentials failure.
    """
    status = response.status
    body = json_body(response)
    code, message = error_of(response, scrub, body)
    where = f"upstream {channel}"
    if code in MODERATION_CODES:
        return ContentBlocked(message)
    if _bad_key(status, message, body):
        return UpstreamAuthError(f"{where} refused our credentials (HTTP {status}){auth_hint}")
    if status == 404 or code == "model_not_found":
        return UpstreamMisconfigured(
            f"{where} does not know the model or the path (HTTP {status}: {message}); check "
            "the channel's model and the upstream's base_url")
    if code in QUOTA_CODES or (status == 429 and _per_day(message, body)):
        return QuotaExhausted(f"{where} is out of quota (HTTP {status}): {message}")
    if status in (408, 409, 425, 429) or status >= 500:
        wait = retry_after(response.headers)
        return UpstreamUnavailable(f"{where} answered HTTP {status}: {message}",
                                   retry_after=wait if wait is not None else retry_delay(body))
    return UpstreamRejected(f"{where} answered HTTP {status}: {message}")


def transport_error(upstream: str, error: BaseException) -> ProviderError:
    cause = getattr(error, "os_error", error)  # aiohttp's connector errors wrap the OSError
    if isinstance(cause, OSError) and cause.errno in (errno.EMFILE, errno.ENFILE):
        return OutOfFiles(f"no connection to upstream {upstream}: this gateway process has "
                          "as many files open as its limit allows")
    if isinstance(error, TimeoutError):
        return UpstreamUnavailable(f"upstream {upstream} timed out ({type(error).__name__})")
    return UpstreamUnavailable(f"upstream {upstream} connection failed ({type(error).__name__})")


def decode_b64(upstream: str, data: Any) -> bytes:
    """Strict base64, as ``b64decode(validate=True)`` reads it."""
    if not isinstance(data, str) or not data:
        raise UpstreamUnavailable(f"upstream {upstream} sent an empty image")
    try:
        return b64.decode(data)
    except (b64.Error, ValueError):
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


def _checked(upstream: str, data: bytes) -> str:
    mime = _inspect(data)
    if mime is None:
        raise UpstreamUnavailable(f"upstream {upstream} sent an undecodable or truncated image")
    return mime


async def checked_image(upstream: str, data: bytes) -> str:
    """The image's real mime type; raises when the bytes are not a whole image.

    A small image is checked on the event loop (tens of microseconds: less than the hop to
    a thread and back); a large one in a thread."""
    if len(data) <= INLINE_BYTES:
        return _checked(upstream, data)
    return await asyncio.to_thread(_checked, upstream, data)


def _b64_image(upstream: str, data: Any) -> tuple[bytes, str]:
    image = decode_b64(upstream, data)
    return image, _checked(upstream, image)


async def b64_image(upstream: str, data: Any) -> tuple[bytes, str]:
    """Decode and check a base64 image: bytes and mime type. Large ones in one thread hop,
    so megabytes of decoding never hold the event loop."""
    if not isinstance(data, str) or len(data) <= INLINE_BYTES * 4 // 3:
        return _b64_image(upstream, data)
    return await asyncio.to_thread(_b64_image, upstream, data)


async def download(client: UpstreamClient, upstream: str, url: str, *,
                   max_bytes: int = MAX_DOWNLOAD, seconds: float = 60.0) -> bytes:
    """Fetch a url-style result: image content type only, size capped, never a redirect loop.

    Errors never show the link: it is the upstream's address and often carries a signature.
    """
    try:
        async with client.stream("GET", url, follow_redirects=True,
                                 timeouts=aiohttp.ClientTimeout(total=seconds)) as r:
            if r.status != 200:
                raise UpstreamUnavailable(
                    f"upstream {upstream} image link answered HTTP {r.status}")
            ctype = r.headers.get("content-type", "")
            if not ctype.startswith("image/"):
                raise UpstreamUnavailable(
                    f"upstream {upstream} image link is not an image "
                    f"({ctype.split(';')[0][:60] or '?'})")
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise UpstreamUnavailable(
                    f"upstream {upstream} image is over the {max_bytes} byte limit")
            chunks, size = [], 0
            async for chunk in r.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise UpstreamUnavailable(
                        f"upstream {upstream} image is over the {max_bytes} byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
    except TransportError as e:
        raise transport_error(upstream, e) from None

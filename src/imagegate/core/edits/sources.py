"""Where an image to edit comes from, and reading it onto local disk with every cap applied.

An upload arrives spooled by the API layer. A URL is fetched through the same SSRF guard as
callbacks (the operator's allowlist included), pinned to the addresses the guard checked,
within a time and size cap. A ``data:`` URI is decoded. One of this gateway's own
``/files/...`` URLs is read straight from storage, so a client can generate, then edit.
Nothing is held whole in memory beyond a small spool; each step bounds what it reads.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import unquote_to_bytes, urljoin, urlsplit, urlunsplit

import httpx

from imagegate import b64
from imagegate.core.errors import BadRequest, RequestTooLarge
from imagegate.core.ssrf import CallbackPolicy, CallbackRefused
from imagegate.storage.store import ImageStore

SPOOL = 1024 * 1024  # bytes kept in memory before a spool moves to disk
MAX_REDIRECTS = 3
CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart form, spooled by the API layer (which closes it)."""

    field: str  # image, image[] or mask
    filename: str | None
    file: IO[bytes]
    size: int


@dataclass(frozen=True, slots=True)
class Link:
    """An image given as text: an http(s) URL, a data: URI or a /files/ URL of ours."""

    field: str
    url: str


Source = Upload | Link


@dataclass(eq=False)
class Blob:
    """One input's bytes on local disk (or a small in-memory spool) and their digest."""

    label: str
    file: IO[bytes]
    size: int
    sha256: str
    owned: bool = True  # closed by whoever read it, not an upload the API layer closes

    def close(self) -> None:
        if self.owned:
            self.file.close()


class Budget:
    """The bytes all inputs of one request may take together (413 beyond them), counted
    as they arrive, so sixteen slow URLs cannot fill a disk before the total is checked."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise RequestTooLarge(f"the images are over the {self.limit:,} byte limit of one "
                                  "edit request together")


def label_of(source: Source, index: int, count: int) -> str:
    """How messages name an input: its position and where it came from (no URL query:
    signed links carry secrets there)."""
    name = "mask" if source.field == "mask" else (
        f"image {index} of {count}" if count > 1 else "image")
    if isinstance(source, Upload):
        return f"{name} ({source.filename!r})" if source.filename else name
    return f"{name} ({shown_url(source.url)})"


def shown_url(url: str) -> str:
    if url.startswith("data:"):
        return "a data: URI"
    try:
        parts = urlsplit(url)
        text = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
    except ValueError:
        text = url
    return text if len(text) <= 80 else text[:77] + "..."


class Reader:
    """Reads sources into Blobs, each within ``max_bytes``."""

    def __init__(self, store: ImageStore, policy: CallbackPolicy, own_prefixes: list[str], *,
                 max_bytes: int, timeout: float) -> None:
        self.store = store
        self.policy = policy
        self.own_prefixes = [p for p in own_prefixes if p]
        self.max_bytes = max_bytes
        self.timeout = timeout
        # no kept-alive connections: they are keyed by the pinned IP, and two hosts on one
        # IP must not share a TLS session made for the other's name (as for callbacks)
        self.client = httpx.AsyncClient(
            follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0),
            headers={"user-agent": "imagegate-edits", "accept": "image/*"})

    async def read(self, source: Source, label: str, budget: Budget) -> Blob:
        if isinstance(source, Upload):
            if source.size > self.max_bytes:
                raise BadRequest(self._too_big(label, source.size))
            budget.take(source.size)
            digest = await asyncio.to_thread(_sha256, source.file)
            return Blob(label, source.file, source.size, digest, owned=False)
        url = source.url.strip()
        if url.startswith("data:"):
            blob = await asyncio.to_thread(self._data_uri, url, label)
            try:
                budget.take(blob.size)
            except RequestTooLarge:
                blob.close()
                raise
            return blob
        key = self.own_key(url)
        if key is not None:
            return await self._stored(key, label, budget)
        return await self._fetch(url, label, budget)

    def _too_big(self, label: str, size: int | None = None) -> str:
        was = f" ({size:,} bytes)" if size is not None else ""
        return f"{label} is over the {self.max_bytes:,} byte per-image limit{was}"

    # ----- data: URIs ------------------------------------------------------------------
    def _data_uri(self, url: str, label: str) -> Blob:
        head, comma, payload = url.partition(",")
        if not comma or not head.lower().endswith(";base64"):
            raise BadRequest(f"{label} must be a base64 data URI (data:image/png;base64,...)")
        if len(payload) * 3 // 4 > self.max_bytes + 3:
            raise BadRequest(self._too_big(label))
        try:
            data = b64.decode(unquote_to_bytes(payload.strip()))
        except (binascii.Error, ValueError):
            raise BadRequest(f"{label} is not valid base64") from None
        if len(data) > self.max_bytes:
            raise BadRequest(self._too_big(label, len(data)))
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - the Blob owns it
        spool.write(data)
        return Blob(label, spool, len(data), hashlib.sha256(data).hexdigest())

    # ----- this gateway's files ----------------------------------------------------------
    def own_key(self, url: str) -> str | None:
        """The storage key behind one of our /files/ URLs (any of our public bases)."""
        for prefix in self.own_prefixes:
            if url.startswith(prefix):
                return url[len(prefix):].split("?", 1)[0].split("#", 1)[0]
        return None

    async def _stored(self, key: str, label: str, budget: Budget) -> Blob:
        size = await self.store.size(key)
        if size is None:
            raise BadRequest(f"{label} is not a file on this gateway (no such file)")
        if size > self.max_bytes:
            raise BadRequest(self._too_big(label, size))
        found = await self.store.stream(key)
        if found is None:
            raise BadRequest(f"{label} is not a file on this gateway (no such file)")
        return await _spool(label, found[1], self.max_bytes, self._too_big(label), budget)

    # ----- http(s) -------------------------------------------------------------------------
    async def _fetch(self, url: str, label: str, budget: Budget) -> Blob:
        what = f"{label} URL"
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(MAX_REDIRECTS + 1):
                    blob, location = await self._get(url, label, what, budget)
                    if blob is not None:
                        return blob
                    url = location
                raise BadRequest(f"{label} was redirected more than {MAX_REDIRECTS} times")
        except TimeoutError:
            raise BadRequest(f"{label} did not arrive within {self.timeout:g} s") from None
        except CallbackRefused as e:
            raise BadRequest(str(e)) from None
        except httpx.HTTPError as e:
            raise BadRequest(f"{label} could not be fetched ({type(e).__name__})") from None

    async def _get(self, url: str, label: str, what: str, budget: Budget
                   ) -> tuple[Blob | None, str]:
        """One hop, pinned to the checked addresses: the image, or the next URL."""
        host, addresses = await self.policy.resolve(url, what)
        parts = urlsplit(url)
        headers = {"host": parts.netloc.rsplit("@", 1)[-1]}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        failure: httpx.TransportError | None = None
        for ip in addresses:
            netloc = f"[{ip}]" if ":" in ip else ip
            if parts.port:
                netloc += f":{parts.port}"
            target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            try:
                async with self.client.stream("GET", target, headers=headers,
                                              extensions=extensions) as r:
                    if r.status_code in (301, 302, 303, 307, 308) and "location" in r.headers:
                        return None, urljoin(url, r.headers["location"])
                    if r.status_code != 200:
                        raise BadRequest(f"{label} could not be fetched: its URL answered "
                                         f"HTTP {r.status_code}")
                    declared = r.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > self.max_bytes:
                        raise BadRequest(self._too_big(label, int(declared)))
                    return await _spool(label, r.aiter_bytes(CHUNK), self.max_bytes,
                                        self._too_big(label), budget), url
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                failure = e
                continue
        assert failure is not None
        raise BadRequest(f"{label} could not be fetched: no connection to its host")

    async def aclose(self) -> None:
        await self.client.aclose()


async def _spool(label: str, chunks: AsyncIterator[bytes], limit: int, too_big: str,
                 budget: Budget) -> Blob:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - the Blob owns it
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise BadRequest(too_big)
            budget.take(len(chunk))
            digest.update(chunk)
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    return Blob(label, spool, size, digest.hexdigest())


def _sha256(file: IO[bytes]) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()

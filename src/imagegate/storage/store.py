"""Where generated images live: an obstore store addressed by URL, with keys we control."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import obstore
from obstore.store import ObjectStore, from_url

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg",
                 "webp": "image/webp", "gif": "image/gif"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")
# A small image on the local disk is written on the event loop: obstore hands every put to
# a tokio blocking thread, and the hand-offs cost ~0.15 ms of CPU per image, three times
# the writing itself (bench/RESULTS.md). Larger ones, and every other store, go to obstore.
INLINE_PUT = 256 * 1024
_temp_names = itertools.count()


def safe_key(key: str) -> bool:
    """Only keys shaped like the ones we write; everything else (traversal, oddities) is refused."""
    if len(key) > 512 or "." not in key:
        return False
    parts = key.split("/")
    return all(_SEGMENT.match(p) and ".." not in p for p in parts) and (
        key.rsplit(".", 1)[1] in CONTENT_TYPES
    )


def content_type_for(key: str) -> str:
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def storage_url_for_dir(directory: Path) -> str:
    return directory.resolve().as_uri()


def write_file(path: Path, data: bytes) -> None:
    """As obstore's LocalStore writes: a new file beside the target, then renamed over it,
    so a reader never sees half an image; missing directories are made."""
    temp = f"{path}#{os.getpid()}-{next(_temp_names)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class ImageStore:
    """A thin layer over obstore so the rest of the gateway deals in keys and bytes."""

    def __init__(self, url: str, **options: object) -> None:
        self.url = url
        self.root: Path | None = None
        if url.startswith("file://"):
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise ValueError(f"a file URL needs an absolute path (file:///dir); got {url}")
            self.root = Path(url2pathname(parts.path)).resolve()
            self.root.mkdir(parents=True, exist_ok=True)
            options.setdefault("mkdir", True)
        self.store: ObjectStore = from_url(url, **options)  # type: ignore[arg-type]

    async def put(self, key: str, data: bytes) -> None:
        if self.root is not None and len(data) <= INLINE_PUT:
            write_file(self.root / key, data)
            return
        await obstore.put_async(self.store, key, data)

    async def put_file(self, key: str, file: IO[bytes]) -> None:
        """Stream a file in (from its start), in parts: an upload is never held whole."""
        file.seek(0)
        await obstore.put_async(self.store, key, file)

    async def delete(self, key: str) -> None:
        """Remove an object; a missing one is fine."""
        with contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self.store, key)

    async def get(self, key: str) -> bytes | None:
        if not self._reachable(key):
            return None
        try:
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            return None

    def local_path(self, key: str) -> Path | None:
        """The file behind a key when the store is the local disk (served without copies):
        a regular file inside the root once every link is followed, or None. A symbolic
        link out of the store (to /etc, another tenant's data...) is not served."""
        if self.root is None or not safe_key(key):
            return None
        try:
            path = (self.root / key).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a loop of links
            return None
        return path if path.is_relative_to(self.root) and path.is_file() else None

    @property
    def is_local(self) -> bool:
        """Keys are files under ``root``: :meth:`local_path` is the only way to them."""
        return self.root is not None

    def _reachable(self, key: str) -> bool:
        """A key we may read: shaped like ours and, on the local disk, a file in the store."""
        return safe_key(key) and (self.root is None or self.local_path(key) is not None)

    async def stream(self, key: str) -> tuple[int, AsyncIterator[bytes]] | None:
        """Size and chunks of an object, without holding it all in memory."""
        if not self._reachable(key):
            return None
        try:
            result = await obstore.get_async(self.store, key)
        except FileNotFoundError:
            return None

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in result:
                yield bytes(chunk)

        return int(result.meta["size"]), chunks()

    async def size(self, key: str) -> int | None:
        """An object's size without fetching it (HEAD requests), or None if it is missing."""
        if not self._reachable(key):
            return None
        try:
            meta = await obstore.head_async(self.store, key)
        except FileNotFoundError:
            return None
        return int(meta["size"])

    async def ping(self) -> None:
        """Readiness: raises when the store cannot be listed."""
        await obstore.list(self.store, prefix="__readyz__").collect_async()

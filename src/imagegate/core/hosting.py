"""Re-hosting upstream images under our own permanent keys."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from imagegate import b64
from imagegate.core.conversion import ensure_format
from imagegate.core.routing.params import Params
from imagegate.providers.base import GeneratedImage, ImageResult, ProviderError
from imagegate.storage.store import EXTENSIONS, ImageStore

Items = list[dict[str, Any]]
T = TypeVar("T")


async def _all(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """``gather``, without a task for the usual lone image (a task costs more than the
    call it wraps when the image is small)."""
    if len(calls) == 1:
        return [await calls[0]]
    return list(await asyncio.gather(*calls))


class ImageHost:
    def __init__(self, store: ImageStore, files_base_url: str) -> None:
        self.store = store
        self.files_base_url = files_base_url

    def url(self, key: str) -> str:
        return f"{self.files_base_url}/{key}"

    def key_of(self, url: str) -> str | None:
        prefix = f"{self.files_base_url}/"
        return url.removeprefix(prefix) if url.startswith(prefix) else None

    async def host(self, family: str, task_id: str, params: Params, result: ImageResult
                   ) -> tuple[Items, Items]:
        """Store every image; return the client's items and the task record's (URLs only:
        task records keep the hosted URL, not megabytes of base64)."""
        if not result.images:
            raise ProviderError("the upstream returned no images")
        hosted = await _all([
            self.host_one(family, task_id, i, params, image)
            for i, image in enumerate(result.images)])
        shown: Items = []
        stored: Items = []
        for data, item in hosted:
            stored.append(item)
            if params.response_format == "b64_json":
                shown.append({"revised_prompt": item["revised_prompt"],
                              "b64_json": b64.encode(data)})
            else:
                shown.append(item)
        return shown, stored

    async def host_one(self, family: str, task_id: str, index: int, params: Params,
                       image: GeneratedImage) -> tuple[bytes, dict[str, Any]]:
        """One image in the format asked for, stored: its bytes and the task record's item
        (a stream hosts each image as it arrives)."""
        data, mime = await ensure_format(image.data, image.mime_type, params.output_format,
                                         params.output_compression)
        key = f"{family}/{task_id}_{index}.{EXTENSIONS[mime]}"
        await self.store.put(key, data)
        revised = params.prompt
        if family != "nano-banana" and image.revised_prompt:
            revised = image.revised_prompt
        return data, {"revised_prompt": revised, "url": self.url(key)}

    async def as_b64(self, items: Items) -> Items:
        """Turn stored URL items back into b64_json items (replays, callbacks)."""
        out: Items = []
        for item in items:
            key = self.key_of(item.get("url", ""))
            data = await self.store.get(key) if key else None
            if data is None:
                out.append(item)
            else:
                out.append({"revised_prompt": item.get("revised_prompt"),
                            "b64_json": b64.encode(data)})
        return out

"""The sandbox, streamed: synthetic partial images spread over its simulated latency.

Each partial is the final picture at a coarser resolution (blocky first, finer next), so a
client sees the image sharpen as OpenAI's partial images do.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from PIL import Image

from imagegate.providers.base import EditRequest, ImageRequest
from imagegate.providers.streaming import FinalImage, PartialImage, StreamEvent

if TYPE_CHECKING:
    from imagegate.providers.sandbox import SandboxProvider

_PIL = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def coarse(data: bytes, mime: str, step: int, steps: int) -> bytes:
    """The picture drawn with 1/2^(steps-step+2) of its detail, in its own format."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        factor = 2 ** (steps - step + 2)
        small = image.resize((max(1, image.width // factor), max(1, image.height // factor)))
        blocky = small.resize(image.size, Image.Resampling.NEAREST)
        out = io.BytesIO()
        blocky.save(out, _PIL.get(mime, "PNG"))
        return out.getvalue()


async def stream(provider: SandboxProvider, request: ImageRequest
                 ) -> AsyncIterator[StreamEvent]:
    whole = await (provider._edit_now(request) if isinstance(request, EditRequest)
                   else provider._generate_now(request))
    steps = request.partial_images
    pause = provider.latency / (steps + 1) if provider.latency > 0 else 0.0
    for index, image in enumerate(whole.images):
        for step in range(steps):
            if pause and index == 0:
                await asyncio.sleep(pause)
            data = await asyncio.to_thread(coarse, image.data, image.mime_type, step, steps)
            yield PartialImage(index, step, data, image.mime_type, whole.meta)
        if pause and index == 0:
            await asyncio.sleep(pause)
        yield FinalImage(index, image, None, whole.meta)

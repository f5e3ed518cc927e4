"""What a streaming upstream yields, whatever its protocol (SPEC section 8).

A provider's ``stream`` turns one request into these events as the upstream sends them:
interim pictures (OpenAI's partial images, the "thought" drafts of Gemini's pro model)
and then each finished image. The core decides what the client sees of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imagegate.providers.base import GeneratedImage


@dataclass(frozen=True, slots=True)
class PartialImage:
    index: int  # which of the request's images it belongs to (0-based)
    partial_index: int  # 0-based, in the order the upstream sent them
    data: bytes
    mime_type: str
    meta: dict[str, Any] | None = None  # as FinalImage's


@dataclass(frozen=True, slots=True)
class FinalImage:
    index: int
    image: GeneratedImage
    usage: dict[str, Any] | None = None  # the upstream's, for this image
    meta: dict[str, Any] | None = None  # OpenAI's size, quality, background, output_format


StreamEvent = PartialImage | FinalImage

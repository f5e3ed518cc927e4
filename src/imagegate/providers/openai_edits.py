"""The multipart body of OpenAI's ``POST /v1/images/edits``, built as the official SDKs build
it: each input as an ``image[]`` file part (openai-python ``extract_files`` with brackets,
openai-node ``addFormValue`` appending ``key[]``), ``mask`` as a file part, every other
field as text. Each part carries the image's real content type: OpenAI judges a file by it
and refuses ``application/octet-stream`` ("Invalid file 'image': unsupported mimetype").
"""

from __future__ import annotations

from typing import Any

import aiohttp

from imagegate.providers.base import EditRequest

_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def edit_form(fields: dict[str, Any], request: EditRequest) -> aiohttp.FormData:
    """A new form per call: aiohttp sends a FormData once, and retries send it again."""
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, _text(value))
    for i, image in enumerate(request.images, start=1):
        form.add_field("image[]", image.data, content_type=image.mime_type,
                       filename=f"image-{i}.{_EXTENSIONS.get(image.mime_type, 'png')}")
    if request.mask is not None:
        form.add_field("mask", request.mask.data, content_type=request.mask.mime_type,
                       filename="mask.png")
    return form

"""Reading an edit request: multipart as the OpenAI SDKs send it, or JSON with image URLs.

Multipart: ``image`` (one file) or ``image[]`` (repeated), an optional ``mask`` file, every
other parameter a text field (openai-python ``extract_files`` paths ``image``,
``image.<array>``, ``mask`` with brackets; openai-node ``addFormValue`` appends ``key[]``
per array entry). Files are spooled by Starlette's parser (memory up to 1 MiB each, then
disk) while the body is counted: past the request limit it stops with 413, so an upload is
never held whole in memory. A text ``image`` value is taken as a URL, as in JSON.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from imagegate.api.body import read_json_object
from imagegate.core.edits.params import MAX_IMAGES, form_fields
from imagegate.core.edits.sources import Link, Source, Upload
from imagegate.core.errors import BadRequest, RequestTooLarge, UnsupportedMediaType
from imagegate.core.routing.params import json_type
from imagegate.settings import Settings

# image, image[] (brackets, the SDKs' way), image[0]... (indices, as some clients send)
IMAGE_FIELD = re.compile(r"^image(\[\d*\])?$")
MAX_FILES = 2 * MAX_IMAGES  # spools opened before the count is checked (and refused)
MAX_FIELDS = 64


@dataclass
class EditForm:
    """The fields (as JSON would carry them), the images in order, and the mask."""

    body: dict[str, Any]
    images: list[Source] = field(default_factory=list)
    mask: Source | None = None
    files: list[UploadFile] = field(default_factory=list)

    async def close(self) -> None:
        for upload in self.files:
            await upload.close()


@asynccontextmanager
async def read_edit(request: Request, settings: Settings) -> AsyncIterator[EditForm]:
    """The request's form; its spooled files are removed when the block ends."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        form = await _multipart(request, settings)
    elif media in ("", "application/json") or media.endswith("+json"):
        form = _json(await read_json_object(request, settings.edit_max_request_bytes))
    else:
        raise UnsupportedMediaType(
            "content-type must be multipart/form-data (image files, as the OpenAI SDKs send "
            f"them) or application/json (image URLs); got {media}")
    try:
        yield form
    finally:
        await form.close()


async def _bounded(request: Request, limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body is over the {limit:,} byte limit of an edit "
                                  "request (all images together)")
        yield chunk


async def _multipart(request: Request, settings: Settings) -> EditForm:
    limit = settings.edit_max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid content-length header")
        if int(declared) > limit:
            raise RequestTooLarge(f"request body is over the {limit:,} byte limit of an edit "
                                  "request (all images together)")
    parser = MultiPartParser(request.headers, _bounded(request, limit), max_files=MAX_FILES,
                             max_fields=MAX_FIELDS, max_part_size=settings.max_body_bytes)
    try:
        data = await parser.parse()
    except MultiPartException as e:
        raise BadRequest(f"the multipart form cannot be read: {e.message}") from None
    form = EditForm(body={}, files=[v for _, v in data.multi_items()
                                    if isinstance(v, UploadFile)])
    try:
        text: dict[str, str] = {}
        for name, value in data.multi_items():
            if isinstance(value, UploadFile):
                if IMAGE_FIELD.match(name) or name == "mask":
                    _add(form, Upload(name, value.filename, value.file, value.size or 0))
                elif name in ("prompt", "model"):
                    raise BadRequest(f"{name} must be a text field, not a file")
                # an unknown file is ignored, like an unknown field
            elif IMAGE_FIELD.match(name) or name == "mask":
                _add(form, Link(name, value))
            else:
                text[name] = value
        form.body = form_fields(text)
    except BaseException:
        await form.close()  # the spooled files go at once, not when collected
        raise
    return form


def _add(form: EditForm, source: Source) -> None:
    if source.field != "mask":
        form.images.append(source)
    elif form.mask is not None:
        raise BadRequest("mask was given twice; send one mask (it applies to the first image)")
    else:
        form.mask = source


def _json(body: dict[str, Any]) -> EditForm:
    """The seed provider's extended mode: ``image`` is a URL or a list of URLs, ``mask`` a
    URL (https/http, data:, or one of this gateway's /files/ URLs)."""
    raw = body.pop("image", None)
    urls: list[Any]
    if raw is None:
        urls = []
    elif isinstance(raw, str):
        urls = [raw]
    elif isinstance(raw, list):
        urls = raw
    else:
        raise BadRequest(f"image must be a URL or a list of URLs; got {json_type(raw)}")
    form = EditForm(body=body)
    for i, url in enumerate(urls):
        if not isinstance(url, str) or not url.strip():
            raise BadRequest(f"image[{i}] must be a URL string; got {json_type(url)}")
        form.images.append(Link("image[]" if isinstance(raw, list) else "image", url))
    mask = body.pop("mask", None)
    if mask is not None:
        if not isinstance(mask, str) or not mask.strip():
            raise BadRequest(f"mask must be a URL string; got {json_type(mask)}")
        form.mask = Link("mask", mask)
    return form

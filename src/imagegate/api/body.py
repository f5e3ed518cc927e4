"""Reading a JSON request body with a size cap, and a clear error for each way it can be wrong."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from imagegate.core.errors import BadRequest, RequestTooLarge, UnsupportedMediaType
from imagegate.core.text import json_type

DEFAULT_MAX_DEPTH = 32


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (breadth first: a deep
    body costs no recursion, here or later when it is hashed, stored or returned)."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
    return False


def _max_depth(request: Request) -> int:
    gateway = getattr(request.app.state, "gateway", None)
    return int(getattr(getattr(gateway, "settings", None), "max_json_depth", DEFAULT_MAX_DEPTH))


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, at most ``limit`` bytes and IMAGEGATE_MAX_JSON_DEPTH deep."""
    ctype = request.headers.get("content-type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType(
            f"content-type must be application/json; got {media}"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("invalid content-length header")
        if int(declared) > limit:
            raise RequestTooLarge(f"request body is over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body is over the {limit} byte limit")
        chunks.append(chunk)
    raw = b"".join(chunks).removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM (PowerShell sends one)
    if not raw.strip():
        raise BadRequest("request body is empty; send a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object; got {json_type(body)}")
    depth = _max_depth(request)
    if nested_deeper(body, depth):
        raise BadRequest(f"request body nests arrays and objects more than {depth} levels deep")
    return body

"""Reading a JSON request body with a size cap, and a clear error for each way it can be wrong."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from imagegate.core.errors import BadRequest, RequestTooLarge, UnsupportedMediaType
from imagegate.core.routing.params import json_type


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
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
    return body

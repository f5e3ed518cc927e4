"""Streamed answers (SPEC section 8): Server-Sent Events in OpenAI's wire format.

Each event is ``event: <type>`` and ``data: <json>`` then a blank line, which the official
SDKs' stream parsers (openai-python ``Stream``, openai-node ``Stream.fromSSEResponse``)
turn into ImageGenStreamEvent / ImageEditStreamEvent objects; an error is one ``event:
error`` whose data is the SPEC section 4 body (the SDKs raise it as APIError).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from imagegate.api.deps import gateway
from imagegate.core.accounts.money import format_credits
from imagegate.core.errors import ApiError
from imagegate.core.generation import Job, Outcome
from imagegate.core.streaming import Delivery, Event

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_HEADERS = {
    "X-Task-Id": {"description": "the task this stream runs (query it with POST /openai/tasks)",
                  "schema": {"type": "string"}},
    "X-Credits-Charged": {"description": "credits the request costs once its stream "
                                         "completes (a stream ending in an error costs nothing)",
                          "schema": {"type": "string"}},
}


def wants_stream(body: dict[str, Any]) -> bool:
    return body.get("stream") is True


def frame(event: Event) -> bytes:
    return b"event: " + event.name.encode() + b"\ndata: " + orjson.dumps(event.data) + b"\n\n"


def error_frame(error: ApiError, trace_id: str) -> bytes:
    body = {"success": False, "error": {"code": error.code, "message": error.message},
            "trace_id": trace_id}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


async def stream_answer(request: Request, job: Job, operation: str) -> Response:
    """Wait for the first event (a failure before it is the usual JSON error), then stream."""
    gw = gateway(request)
    first, delivery = await gw.streams.open(job, operation)
    headers = {**HEADERS, "X-Task-Id": job.task_id,
               "X-Credits-Charged": format_credits(job.cost)}
    return StreamingResponse(_frames(first, delivery, job.trace_id,
                                     gw.settings.stream_keepalive),
                             media_type="text/event-stream", headers=headers)


async def _frames(first: Event, delivery: Delivery, trace_id: str, keepalive: float
                  ) -> AsyncIterator[bytes]:
    """The events, and a comment line when the upstream is quiet for a while: proxies keep
    the connection open, and the SDKs' parsers skip comments."""
    try:
        yield frame(first)
        while True:
            try:
                item = await asyncio.wait_for(delivery.queue.get(), keepalive)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is None:
                return
            if isinstance(item, ApiError):
                yield error_frame(item, trace_id)
                return
            yield frame(item)
    finally:
        delivery.leave()  # a client gone mid-stream: the task goes on without it


async def replayed(request: Request, outcome: Outcome, operation: str) -> Response:
    """An Idempotency-Key replay of a streamed request: the first answer's images, as
    completed events, uncharged."""
    body = outcome.body
    items = await gateway(request).generation.host.as_b64(body.get("data") or [])
    stored = body.get("data") or []
    fields = {k: body[k] for k in ("size", "quality", "background", "output_format")
              if k in body}
    frames = []
    for index, (item, kept) in enumerate(zip(items, stored, strict=False)):
        data = {"type": f"{operation}.completed", "b64_json": item.get("b64_json"),
                "created_at": body.get("created"), **fields, "url": kept.get("url"),
                "revised_prompt": kept.get("revised_prompt"), "task_id": body.get("task_id"),
                "image_index": index}
        if "usage" in body:
            data["usage"] = body["usage"]
        frames.append(frame(Event(f"{operation}.completed", data)))

    async def send() -> AsyncIterator[bytes]:
        for chunk in frames:
            yield chunk

    headers = {**HEADERS, "X-Task-Id": str(body.get("task_id")), "X-Credits-Charged": "0",
               "Idempotent-Replayed": "true"}
    return StreamingResponse(send(), media_type="text/event-stream", headers=headers)

"""Pure ASGI middleware: cheap enough to sit in front of every request."""

from __future__ import annotations

import uuid

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("imagegate.api")


class TraceIdMiddleware:
    """Gives every request a trace_id (a handler may replace it with the client's) and
    returns it as X-Trace-Id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["trace_id"] = str(uuid.uuid4())

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-trace-id", state["trace_id"].encode("latin-1", "replace")))
                message["headers"] = headers
            await send(message)

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_trace(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            # The log gets the stack trace; the client gets the SPEC body and the trace_id.
            log.exception("internal_error", trace_id=state["trace_id"], path=scope.get("path"))
            if started:
                raise
            body = orjson.dumps({
                "success": False, "trace_id": state["trace_id"],
                "error": {"code": "api_error",
                          "message": f"internal error (trace_id {state['trace_id']})"},
            })
            await send_with_trace({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]})
            await send({"type": "http.response.body", "body": body})

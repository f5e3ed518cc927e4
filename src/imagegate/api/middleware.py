"""Pure ASGI middleware: cheap enough to sit in front of every request."""

from __future__ import annotations

import time
import uuid

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.core import metrics

log = structlog.get_logger("imagegate.api")
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
NOTHING_CHARGED = (b"x-credits-charged", b"0")


class RequestMiddleware:
    """Gives every request a trace_id (a handler may replace it with the client's), returns it
    as X-Trace-Id, counts and times the request, and logs one line for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["trace_id"] = str(uuid.uuid4())
        status = 500
        response_started = False

        async def send_with_trace(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-trace-id", state["trace_id"].encode("latin-1", "replace")))
                if 200 <= status < 300 and not any(k == b"x-credits-charged" for k, _ in headers):
                    headers.append(NOTHING_CHARGED)  # every success says what it cost
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace)
        except Exception:
            # The log gets the stack trace; the client gets the SPEC body and the trace_id.
            log.exception("internal_error", trace_id=state["trace_id"], path=scope.get("path"))
            if response_started:
                raise
            await _internal_error(send_with_trace, state["trace_id"])
        finally:
            self._observe(scope, state, status, time.perf_counter() - started)

    @staticmethod
    def _observe(scope: Scope, state: dict[str, object], status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        model = str(state.get("model") or "")
        metrics.requests_total.labels(route, model, str(status)).inc()
        metrics.request_seconds.labels(route).observe(seconds)
        if route in QUIET:
            return
        log.info("request", method=scope.get("method"), path=scope.get("path"), status=status,
                 duration_ms=round(seconds * 1000, 2), trace_id=state.get("trace_id"),
                 task_id=state.get("task_id"), model=model or None,
                 credential=state.get("credential"))


async def _internal_error(send: Send, trace_id: str) -> None:
    body = orjson.dumps({
        "success": False, "trace_id": trace_id,
        "error": {"code": "api_error", "message": f"internal error (trace_id {trace_id})"},
    })
    await send({"type": "http.response.start", "status": 500, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})

"""Pure ASGI middleware: cheap enough to sit in front of every request."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagegate.core import metrics
from imagegate.core.errors import RequestTimeout

log = structlog.get_logger("imagegate.api")
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
NOTHING_CHARGED = (b"x-credits-charged", b"0")
DISCONNECTED = 499  # the status nginx logs for a client that went away mid-request
WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_RATE = 64 * 1024  # bytes a second that keep a long body's deadline moving


class RequestMiddleware:
    """Gives every request a trace_id (a handler may replace it with the client's), returns it
    as X-Trace-Id, counts and times the request, and logs one line for it. A request body
    must arrive within ``body_timeout`` seconds of the request's start, and a second more
    for every ``BODY_RATE`` bytes of it received."""

    def __init__(self, app: ASGIApp, body_timeout: float = 60.0) -> None:
        self.app = app
        self.body_timeout = body_timeout

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

        if scope.get("method") in WITH_BODY:
            receive = self._in_time(receive, started)
        try:
            await self.app(scope, receive, send_with_trace)
        except ClientDisconnect:
            # the client's doing (it closed the connection before its body was sent): no
            # one is left to answer, and nothing here failed
            status = DISCONNECTED
            log.info("client_disconnected", trace_id=state["trace_id"], path=scope.get("path"))
        except Exception:
            # The log gets the stack trace; the client gets the SPEC body and the trace_id.
            log.exception("internal_error", trace_id=state["trace_id"], path=scope.get("path"))
            if response_started:
                raise
            await _internal_error(send_with_trace, state["trace_id"])
        finally:
            self._observe(scope, state, status, time.perf_counter() - started)

    def _in_time(self, receive: Receive, started: float) -> Receive:
        """``receive``, refusing to wait for the body past its deadline (after the body,
        waiting for the client to disconnect is not bounded). The deadline moves a second
        later for every ``BODY_RATE`` bytes received: a large upload on a slow link goes
        on, a trickle of bytes does not."""
        received = 0
        body_done = False

        async def receive_in_time() -> Message:
            nonlocal body_done, received
            if body_done:
                return await receive()
            deadline = started + self.body_timeout + received / BODY_RATE
            try:
                async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                    message = await receive()
            except TimeoutError:
                body_done = True
                raise RequestTimeout(
                    f"the request body did not arrive within {self.body_timeout:g}s (and a "
                    f"second more per {BODY_RATE // 1024} KB received)",
                    headers={"Connection": "close"}) from None
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                body_done = True
            return message

        return receive_in_time

    @staticmethod
    def _observe(scope: Scope, state: dict[str, object], status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        model = str(state.get("model") or "")
        metrics.child(metrics.requests_total, route, model, str(status)).inc()
        metrics.child(metrics.request_seconds, route).observe(seconds)
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

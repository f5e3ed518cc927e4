"""What a connection may cost us before it has sent a request, and how many we hold.

uvicorn closes a kept-alive connection that stays silent after a response, but a connection
that trickles its request head a byte at a time, or opens and says nothing, is held forever:
a few thousand of them take every file descriptor of a node. Here each connection gets a
deadline for each request head (from the moment it connects, then from the end of each
response); a connection that has not sent a whole head by then, and has no request in
flight, is closed. The body has its own deadline (see ``RequestMiddleware``).

Every connection is an open file, and so is every upstream connection, database connection
and image being written. A process that let clients take all its files would fail the
requests it already holds (an image paid for upstream, then not stored). So a connection
made while the process holds ``max_connections`` others is answered 429 with
``Retry-After`` and closed, and the files left over stay for the work in flight.
"""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from imagegate.api.errors import error_response
from imagegate.core import metrics

log = structlog.get_logger("imagegate.api")
ALWAYS_SERVED = frozenset({"/healthz", "/readyz"})  # a load balancer still sees the node
RESERVED_SHARE = 4  # a quarter of the open-file limit is kept from clients by default
REFUSED_HEAD_WAIT = 1.0  # seconds a refused connection may hold its file before its head


class HeadDeadline:
    """Mixed into uvicorn's HTTP protocol (httptools or h11: both keep ``cycle``, the
    request being served, and call ``on_response_complete`` when one is answered)."""

    header_timeout = 10.0
    max_connections: int | None = None
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    connections: set[Any]  # every open connection of this server, this one included
    app: ASGIApp

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            # this connection only: its head is answered 429, and it may take 1 s to come
            self.app = Refusal(self.app, self.max_connections)
            self.header_timeout = min(self.header_timeout, REFUSED_HEAD_WAIT)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    def _await_head(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_late,
                                                self.cycle)

    def _head_late(self, cycle_then: Any) -> None:
        """No new request head since the deadline was set, and nothing left to answer."""
        if self.transport.is_closing() or self.cycle is not cycle_then:
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()


class Refusal:
    """The app of a connection made over the limit: a 429 that closes it, except for
    health checks."""

    last_logged = 0.0

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_SERVED:
            await self.app(scope, receive, send)
            return
        metrics.connections_refused.inc()
        now = time.monotonic()
        if now - Refusal.last_logged >= 10:  # one line per 10 s: a flood must not flood
            Refusal.last_logged = now
            log.warning("connections_refused", limit=self.limit)
        response = error_response(
            429, "too_many_requests",
            f"this gateway process holds as many connections as it may ({self.limit}); "
            "try again shortly", str(uuid.uuid4()), {"Retry-After": "1", "Connection": "close"})
        await response(scope, receive, send)


def http_protocol(header_timeout: float, max_connections: int | None = None
                  ) -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol class, with the head deadline and the connection cap."""
    return type("GuardedHTTPProtocol", (HeadDeadline, AutoHTTPProtocol),
                {"header_timeout": header_timeout, "max_connections": max_connections})


def connection_cap(configured: int | None, open_files: int) -> int:
    """``configured`` (``IMAGEGATE_MAX_CLIENT_CONNECTIONS``), else three quarters of the open-file
    limit: the rest is for upstream and database connections and files being written."""
    if configured is not None:
        return configured
    return max(1, open_files - open_files // RESERVED_SHARE)


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one (often 1,024 of 500,000+): every
    connection is a file, and the soft default is what takes a busy node down."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:  # e.g. a hard limit above the kernel's nr_open
            log.warning("open_file_limit_unchanged", soft=soft, hard=hard, error=str(e))
    return soft

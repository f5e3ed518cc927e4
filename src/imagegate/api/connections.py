"""What a connection may cost us before it has sent a request.

uvicorn closes a kept-alive connection that stays silent after a response, but a connection
that trickles its request head a byte at a time, or opens and says nothing, is held forever:
a few thousand of them take every file descriptor of a node. Here each connection gets a
deadline for each request head (from the moment it connects, then from the end of each
response); a connection that has not sent a whole head by then, and has no request in
flight, is closed. The body has its own deadline (see ``RequestMiddleware``).
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import structlog
from uvicorn.protocols.http.auto import AutoHTTPProtocol

log = structlog.get_logger("imagegate.api")


class HeadDeadline:
    """Mixed into uvicorn's HTTP protocol (httptools or h11: both keep ``cycle``, the
    request being served, and call ``on_response_complete`` when one is answered)."""

    header_timeout = 10.0
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
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


def http_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol class, with the head deadline."""
    return type("GuardedHTTPProtocol", (HeadDeadline, AutoHTTPProtocol),
                {"header_timeout": header_timeout})


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

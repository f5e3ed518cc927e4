"""uvicorn, with a shutdown that keeps its promises within one grace period.

On SIGTERM uvicorn stops accepting and waits up to the grace period for requests to end,
then cancels them (their clients get a bare 500), and only after that runs the app's own
shutdown. Here the gateway hears of the signal at once: workers stop claiming, and just
before the grace period ends, synchronous requests still running are stopped so that each
client gets a real error body (and no charge) while its connection is still open.

Under `serve --processes N` the supervisor hears the signals and passes SIGTERM on, once;
a supervised server ignores SIGINT (a terminal sends it to every process of the group, and
a second signal would make uvicorn drop its connections at once).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

ANSWER_MARGIN = 1.0  # seconds left for stopped requests to answer before uvicorn cancels


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None],
                 on_deadline: Callable[[], None], grace: float, *,
                 on_ready: Callable[[], None] | None = None, supervised: bool = False) -> None:
        super().__init__(config)
        self.on_signal = on_signal
        self.on_deadline = on_deadline
        self.grace = grace
        self.on_ready = on_ready
        self.supervised = supervised

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.supervised and sig == signal.SIGINT:
            return
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_signal()
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(max(0.0, self.grace - ANSWER_MARGIN), self.on_deadline)
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()

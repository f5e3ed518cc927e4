"""uvicorn, with a shutdown that keeps its promises within one grace period.

On SIGTERM uvicorn stops accepting and waits up to the grace period for requests to end,
then cancels them (their clients get a bare 500), and only after that runs the app's own
shutdown. Here the gateway hears of the signal at once: workers stop claiming, and just
before the grace period ends, synchronous requests still running are stopped so that each
client gets a real error body (and no charge) while its connection is still open.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

ANSWER_MARGIN = 1.0  # seconds left for stopped requests to answer before uvicorn cancels


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None],
                 on_deadline: Callable[[], None], grace: float) -> None:
        super().__init__(config)
        self.on_signal = on_signal
        self.on_deadline = on_deadline
        self.grace = grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_signal()
        loop = asyncio.get_running_loop()
        deadline = loop.call_later(max(0.0, self.grace - ANSWER_MARGIN), self.on_deadline)
        try:
            await super().shutdown(sockets)
        finally:
            deadline.cancel()

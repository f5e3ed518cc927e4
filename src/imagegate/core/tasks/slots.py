"""Waiting for a slot: a synchronous request over its credential's concurrency limit may
wait up to ``IMAGEGATE_SLOT_WAIT`` seconds for a generation in flight to end, instead of
a 429 at once (0, the default, keeps the immediate 429).

The limit itself stays where it is exact for every process and node: the admission
transaction counts the running tasks. Waiting only retries that admission, woken at once
when a task of the credential ends in this process, and every so often otherwise (a task
that ends in another process or node frees its slot for us without telling us).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from imagegate.core.tasks.intake import SlotsTaken

POLL_FIRST, POLL_MAX = 0.05, 0.5  # seconds between tries when nothing here wakes us


class SlotWaiter:
    def __init__(self, wait: float) -> None:
        self.wait = wait
        self._ended: dict[str, asyncio.Event] = {}

    def ended(self, credential_id: str) -> None:
        """A task of the credential ended in this process: its waiters try again now."""
        event = self._ended.pop(credential_id, None)
        if event is not None:
            event.set()

    async def admit(self, credential_id: str, attempt: Callable[[], Awaitable[None]],
                    refresh: Callable[[], None]) -> None:
        """Run ``attempt`` (one admission) until it is not refused for want of a slot, or
        the wait is over; ``refresh`` restamps the row before each new try."""
        deadline = time.monotonic() + self.wait
        delay = POLL_FIRST
        while True:
            try:
                await attempt()
                return
            except SlotsTaken as e:
                left = deadline - time.monotonic()
                if left <= 0:
                    if self.wait > 0:
                        e.message = f"{e.message}; no slot came free within {self.wait:g}s"
                    raise
            event = self._ended.setdefault(credential_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), min(delay, left))
            except TimeoutError:
                delay = min(delay * 2, POLL_MAX)
            refresh()

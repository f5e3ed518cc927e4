"""The callback retry schedule does what the README says: 1 s doubling up to the 1 h cap."""

from __future__ import annotations

import asyncio

from imagegate.core.tasks.callbacks import CallbackDispatcher
from imagegate.settings import Settings


def schedule(settings: Settings) -> list[float]:
    """The waits after each failed attempt but the last, for these settings."""
    async def waits() -> list[float]:
        dispatcher = CallbackDispatcher(
            None, None, None, base_delay=settings.callback_base_delay,  # type: ignore[arg-type]
            max_delay=settings.callback_max_delay,
            max_attempts=settings.callback_max_attempts)
        try:
            return [dispatcher.delay(a) for a in range(1, settings.callback_max_attempts)]
        finally:
            await dispatcher.aclose()

    return asyncio.run(waits())


def test_the_default_schedule_reaches_its_cap() -> None:
    waits = schedule(Settings())
    assert waits[:4] == [1, 2, 4, 8]
    assert max(waits) == Settings().callback_max_delay == 3600
    assert waits.count(3600) >= 2  # it stays there, not merely touches it


def test_a_long_schedule_stays_at_the_cap() -> None:
    waits = schedule(Settings(callback_max_attempts=2000))
    assert waits[-1] == 3600 and len(waits) == 1999

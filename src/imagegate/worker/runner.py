"""Workers: claim queued tasks, run them under a lease, recover the ones whose runner died,
and deliver callbacks. The same loops run inside `imagegate serve` and in `imagegate worker`."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from imagegate.core.gateway import Gateway
from imagegate.core.generation import GenerationService
from imagegate.core.routing.params import wants_async
from imagegate.core.tasks.callbacks import CallbackDispatcher
from imagegate.core.tasks.store import TaskStore

log = structlog.get_logger("imagegate.worker")


class Worker:
    @classmethod
    def for_gateway(cls, gateway: Gateway) -> Worker:
        s = gateway.settings
        return cls(gateway.generation, gateway.tasks, gateway.callbacks,
                   concurrency=max(1, s.workers), poll_interval=s.poll_interval)

    def __init__(self, generation: GenerationService, tasks: TaskStore,
                 callbacks: CallbackDispatcher, *, concurrency: int = 4,
                 poll_interval: float = 1.0, callback_concurrency: int = 8) -> None:
        self.generation = generation
        self.per_credential = generation.default_concurrency
        self.tasks = tasks
        self.callbacks = callbacks
        self.owner = generation.node_id
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.callback_concurrency = callback_concurrency
        self.wake = generation.notifier.event
        self.callback_wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="imagegate-claim"),
            asyncio.create_task(self._recovery_loop(), name="imagegate-recovery"),
            asyncio.create_task(self._callback_loop(), name="imagegate-callbacks"),
        ]

    async def _wait(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.poll_interval)
        event.clear()

    async def _claim_loop(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while True:
            await slots.acquire()
            try:
                claimed = await self.tasks.claim(self.owner, self.per_credential)
            except Exception:  # noqa: BLE001 - keep polling through database blips
                log.warning("claim_failed", exc_info=True)
                claimed = None
            if claimed is None:
                slots.release()
                await self._wait(self.wake)
                continue
            log.info("task_claimed", task_id=claimed.id, trace_id=claimed.trace_id,
                     attempt=claimed.attempts)
            task = asyncio.create_task(self._run(claimed, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, claimed, slots: asyncio.Semaphore) -> None:  # type: ignore[no-untyped-def]
        try:
            await self.generation.run_claimed(claimed, self.owner)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("task_crashed", task_id=claimed.id)
        finally:
            slots.release()
            self.callback_wake.set()
            self.wake.set()  # a slot is free: look for more work now

    async def _recovery_loop(self) -> None:
        while True:
            try:
                requeued, exhausted = await self.tasks.recover()
                if requeued:
                    log.warning("tasks_requeued", count=requeued)
                    self.wake.set()
                for c in exhausted:
                    await self.generation.fail_claimed(
                        c, "recovery", "api_error",
                        f"the task failed after {c.attempts} attempts (its runner stopped)"
                        if wants_async(c.request) else "the gateway node running this "
                        "request stopped; nothing was charged")
                    self.callback_wake.set()
            except Exception:  # noqa: BLE001
                log.warning("recovery_failed", exc_info=True)
            await asyncio.sleep(max(0.5, self.tasks.lease / 2))

    async def _callback_loop(self) -> None:
        slots = asyncio.Semaphore(self.callback_concurrency)
        while True:
            await slots.acquire()
            try:
                task_id = await self.callbacks.claim()
            except Exception:  # noqa: BLE001
                log.warning("callback_claim_failed", exc_info=True)
                task_id = None
            if task_id is None:
                slots.release()
                await self._wait(self.callback_wake)
                continue

            async def deliver(tid: str = task_id) -> None:
                try:
                    await self.callbacks.deliver(tid)
                except Exception:  # noqa: BLE001
                    log.exception("callback_crashed", task_id=tid)
                finally:
                    slots.release()

            t = asyncio.create_task(deliver())
            self._running.add(t)
            t.add_done_callback(self._running.discard)

    def stop_claiming(self) -> None:
        for loop in self._loops:
            loop.cancel()

    def cancel_running(self) -> None:
        """Tasks go back to the queue (see GenerationService.run); deliveries lapse and
        are retried later."""
        for task in list(self._running):
            task.cancel()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let running tasks finish within ``grace``, then hand them back."""
        self.stop_claiming()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._running:
            _, pending = await asyncio.wait(self._running, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

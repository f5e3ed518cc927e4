"""`imagegate worker`: task runners without the HTTP API, stopped cleanly by SIGTERM/SIGINT.

Under `worker --processes N` the supervisor hears the signals and passes SIGTERM on once, so
a supervised worker listens to SIGTERM only.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import structlog

from imagegate.allocator import keep_large_buffers
from imagegate.core.gateway import Gateway
from imagegate.settings import Settings
from imagegate.worker.runner import Worker

log = structlog.get_logger("imagegate.worker")


async def run_worker(settings: Settings, *, on_ready: Callable[[], None] | None = None,
                     supervised: bool = False) -> None:
    keep_large_buffers()
    gateway = await Gateway.start(settings)
    worker = Worker.for_gateway(gateway)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM,) if supervised else (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker.start()
    log.info("worker_started", node=gateway.node_id, concurrency=worker.concurrency)
    print(f"imagegate worker {gateway.node_id} running", flush=True)
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
    finally:
        log.info("worker_stopping", node=gateway.node_id)
        await worker.stop(settings.shutdown_grace)
        await gateway.close()

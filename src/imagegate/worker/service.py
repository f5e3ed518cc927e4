"""`imagegate worker`: task runners without the HTTP API, stopped cleanly by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

import structlog

from imagegate.core.gateway import Gateway
from imagegate.settings import Settings
from imagegate.worker.runner import Worker

log = structlog.get_logger("imagegate.worker")


async def run_worker(settings: Settings) -> None:
    gateway = await Gateway.start(settings)
    worker = Worker.for_gateway(gateway)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker.start()
    log.info("worker_started", node=gateway.node_id, concurrency=worker.concurrency)
    print(f"imagegate worker {gateway.node_id} running", flush=True)
    try:
        await stop.wait()
    finally:
        log.info("worker_stopping", node=gateway.node_id)
        await worker.stop(settings.shutdown_grace)
        await gateway.close()

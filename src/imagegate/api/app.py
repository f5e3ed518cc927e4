"""The ASGI application: routes, error rendering and the gateway's lifecycle."""

from __future__ import annotations

import inspect
import math
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from imagegate import __version__
from imagegate.allocator import keep_large_buffers
from imagegate.api import (
    account,
    admin,
    console,
    edits,
    errors,
    generations,
    openapi,
    playground,
    system,
    tasks,
)
from imagegate.api.connections import connection_cap, http_protocol, raise_open_file_limit
from imagegate.api.hot import Gate
from imagegate.api.middleware import RequestMiddleware
from imagegate.api.serving import Server
from imagegate.core.gateway import Gateway
from imagegate.core.node_memory import NodeMemory
from imagegate.settings import Settings
from imagegate.worker.runner import Worker

# answered past FastAPI's stack (api/hot.py): the path of every image
HOT_ROUTES = frozenset({("POST", "/v1/images/generations"),
                        ("POST", "/openai/images/generations")})


class Node:
    """This process's gateway and workers, and the one deadline they stop by."""

    def __init__(self, gateway: Gateway, worker: Worker | None, grace: float) -> None:
        self.gateway = gateway
        self.worker = worker
        self.grace = grace
        self.stop_by: float | None = None

    def signalled(self) -> None:
        """SIGTERM: take no new work; what runs has until the deadline."""
        self.stop_by = time.monotonic() + self.grace
        if self.worker is not None:
            self.worker.stop_claiming()

    def deadline(self) -> None:
        """Just before the deadline: answer waiting clients, hand back async tasks."""
        self.gateway.generation.stop_inline()
        if self.worker is not None:
            self.worker.cancel_running()

    async def close(self) -> None:
        if self.worker is not None:
            left = self.grace if self.stop_by is None else self.stop_by - time.monotonic()
            await self.worker.stop(max(0.0, left))
        await self.gateway.close()


def _telemetry(settings: Settings) -> dict[str, Any]:
    """FastAPI's own OpenTelemetry looks for configured providers on every request (~5% of
    an async submission here); it is on only when the operator asks for it."""
    if settings.opentelemetry or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(settings: Settings | None = None, memory: NodeMemory | None = None) -> FastAPI:
    """``memory``: shared with this node's other processes (`serve --processes N`)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = await Gateway.start(settings, memory=memory)
        app.state.gateway = gateway
        worker = Worker.for_gateway(gateway) if settings.workers > 0 else None
        app.state.node = node = Node(gateway, worker, settings.shutdown_grace)
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            await node.close()

    app = Gate(title="imagegate", version=__version__, lifespan=lifespan,
               docs_url=None, redoc_url=None, openapi_url=None,  # api/openapi.py serves them
               redirect_slashes=False, **_telemetry(settings))
    app.add_middleware(RequestMiddleware, body_timeout=settings.body_timeout)
    errors.install(app)
    app.include_router(generations.router)
    app.include_router(edits.router)
    app.include_router(system.router)
    app.include_router(tasks.router)
    app.include_router(admin.router)
    app.include_router(account.router)
    app.include_router(playground.router)
    app.include_router(openapi.router)
    console.install(app)
    if not settings.opentelemetry:  # with telemetry on, every request gets FastAPI's spans
        app.hot_path(generations.router, HOT_ROUTES, settings.body_timeout)
    return app


def run(app: FastAPI, settings: Settings, *, sockets: list[socket.socket] | None = None,
        on_ready: Callable[[], None] | None = None, supervised: bool = False,
        **uvicorn_options: Any) -> None:
    """Run ``app`` under uvicorn, telling its node of SIGTERM at once (see api/serving.py).

    ``sockets``: already listening (bound by the supervisor of `--processes N`, which is
    also the one to hear SIGINT: ``supervised``); ``on_ready`` once requests are served."""
    def node() -> Node | None:
        return getattr(app.state, "node", None)

    def signalled() -> None:
        if (n := node()) is not None:
            n.signalled()

    def deadline() -> None:
        if (n := node()) is not None:
            n.deadline()

    open_files = raise_open_file_limit()
    keep_large_buffers()
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level=settings.log_level, access_log=False,
                            timeout_graceful_shutdown=math.ceil(settings.shutdown_grace),
                            timeout_keep_alive=math.ceil(settings.keep_alive_timeout),
                            http=http_protocol(settings.header_timeout, connection_cap(
                                settings.max_client_connections, open_files)),
                            forwarded_allow_ips=settings.forwarded_allow_ips, **uvicorn_options)
    Server(config, signalled, deadline, settings.shutdown_grace, on_ready=on_ready,
           supervised=supervised).run(sockets)

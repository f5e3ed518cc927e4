"""The ASGI application: routes, error rendering and the gateway's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from imagegate import __version__
from imagegate.api import account, admin, errors, images, playground, system, tasks
from imagegate.api.middleware import RequestMiddleware
from imagegate.core.gateway import Gateway
from imagegate.settings import Settings
from imagegate.worker.runner import Worker


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = await Gateway.start(settings)
        app.state.gateway = gateway
        worker = Worker.for_gateway(gateway) if settings.workers > 0 else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop(settings.shutdown_grace)
            await gateway.close()

    app = FastAPI(title="imagegate", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  redirect_slashes=False)
    app.add_middleware(RequestMiddleware)
    errors.install(app)
    app.include_router(images.router)
    app.include_router(system.router)
    app.include_router(tasks.router)
    app.include_router(admin.router)
    app.include_router(account.router)
    app.include_router(playground.router)
    return app

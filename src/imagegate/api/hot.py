"""The route every image takes, answered without FastAPI's routing and middleware stack.

Between uvicorn and a handler FastAPI puts seven layers (server errors, telemetry, a body
limit, our middleware, exception handlers, an exit stack, the router and its dependency
solving). On an async submission, whose own work is a few dictionary lookups and one
grouped database write, those layers were ~20% of the gateway's CPU (py-spy, bench.intake,
bench/RESULTS.md). Here a request for a hot route goes through :class:`RequestMiddleware`
(trace id, metrics, the request log line, the body deadline, the SPEC body of a 500) to its
handler directly, and an :class:`ApiError` is rendered as ``errors.install`` renders it.
Every other request, and these routes' other methods, take the full stack; the routes stay
declared (and documented) on the FastAPI app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from imagegate.api.errors import error_response, trace_id_of
from imagegate.api.middleware import RequestMiddleware
from imagegate.core.errors import ApiError

Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """Pure ASGI: ``(method, path)`` to the FastAPI route's own endpoint."""

    def __init__(self, router: APIRouter, keys: frozenset[tuple[str, str]]) -> None:
        """``router``: included in the app without a prefix, so its paths are the app's."""
        self.routes: dict[tuple[str, str], tuple[APIRoute, Handler]] = {}
        for route in router.routes:
            if isinstance(route, APIRoute):
                for method in route.methods:
                    if (method, route.path) in keys:
                        self.routes[(method, route.path)] = (route, route.endpoint)

    def match(self, scope: Scope) -> bool:
        return (scope.get("method"), scope.get("path")) in self.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, endpoint = self.routes[(scope["method"], scope["path"])]
        scope["route"] = route  # what the request metrics are labelled by
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, trace_id_of(request),
                                      exc.headers)
        await response(scope, receive, send)


class Gate(FastAPI):
    """The FastAPI app, with :class:`HotRoutes` in front once :meth:`hot_path` is called."""

    _hot: HotRoutes | None = None
    _hot_app: RequestMiddleware | None = None

    def hot_path(self, router: APIRouter, keys: frozenset[tuple[str, str]],
                 body_timeout: float) -> None:
        self._hot = HotRoutes(router, keys)
        if len(self._hot.routes) != len(keys):
            raise RuntimeError(f"hot routes not found in the router: {sorted(keys)}")
        self._hot_app = RequestMiddleware(self._hot, body_timeout=body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self._hot_app is not None and scope["type"] == "http" and self._hot is not None
                and self._hot.match(scope)):
            scope["app"] = self
            await self._hot_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

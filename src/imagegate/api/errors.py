"""The SPEC error body for every failure, and the handlers that make sure nothing else escapes."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagegate.core.errors import ApiError
from imagegate.core.text import cut, shown

log = structlog.get_logger("imagegate.api")


def trace_id_of(request: Request) -> str:
    return str(getattr(request.state, "trace_id", "") or "")


def error_response(status: int, code: str, message: str, trace_id: str,
                   headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"success": False, "error": {"code": code, "message": cut(message)},
                            "trace_id": trace_id}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, trace_id_of(request),
                              exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_response(404, "no_api", f"no API at {shown(request.url.path)}",
                                  trace_id_of(request))
        if exc.status_code == 405:
            return error_response(405, "no_api",
                                  f"{request.method} is not supported on {shown(request.url.path)}",
                                  trace_id_of(request), {"Allow": exc.headers.get("Allow", "")}
                                  if exc.headers else None)
        return error_response(exc.status_code, "bad_request", cut(str(exc.detail)),
                              trace_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        return error_response(400, "bad_request", f"{where or 'request'}: {first.get('msg')}",
                              trace_id_of(request))

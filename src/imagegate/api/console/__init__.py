"""The admin console under /admin/console (on only when IMAGEGATE_ADMIN_KEY is set)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from imagegate.api.console import auth, credentials, exports, reports
from imagegate.api.console.web import PREFIX, SignInRequired, admin_key, redirect
from imagegate.core.errors import NoApi

static = APIRouter(include_in_schema=False)  # the console is pages, not API
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".txt": "text/plain; charset=utf-8"}


@cache
def _asset(name: str) -> bytes | None:
    """A file under static/admin/ (the names are fixed by the package: no path tricks)."""
    if not name or ".." in name.split("/") or name.startswith("/"):
        return None
    path = resources.files("imagegate").joinpath("static", "admin", *name.split("/"))
    return path.read_bytes() if path.is_file() else None


@static.get(PREFIX + "/static/{name:path}")
async def asset(name: str, request: Request) -> Response:
    """Styles, scripts and the vendored chart library: no data, so no session needed."""
    admin_key(request)
    kind = TYPES.get(name[name.rfind("."):] if "." in name else "")
    body = _asset(name) if kind else None
    if body is None:
        raise NoApi(f"no file {name!r}")
    return Response(body, media_type=kind, headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


@static.get("/admin")
@static.get(PREFIX)
async def home(request: Request) -> Response:
    admin_key(request)
    return redirect(auth.HOME)


def install(app: FastAPI) -> None:
    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return redirect(f"{PREFIX}/sign-in?next={quote(exc.back_to, safe='/')}")

    for router in (static, auth.router, credentials.router, reports.router, exports.router):
        app.include_router(router)

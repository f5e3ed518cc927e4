"""GET /playground: a page to try the API, shipped as plain files (no build step)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from imagegate.core.errors import NoApi
from imagegate.core.text import shown

router = APIRouter(include_in_schema=False)  # a page, not the API
FILES = {"playground.html": "text/html; charset=utf-8",
         "playground.css": "text/css; charset=utf-8",
         "playground.js": "text/javascript; charset=utf-8",
         "family.js": "text/javascript; charset=utf-8",
         "snippets.js": "text/javascript; charset=utf-8",
         "edit.js": "text/javascript; charset=utf-8",
         "edit_snippets.js": "text/javascript; charset=utf-8",
         "run.js": "text/javascript; charset=utf-8",
         "stream.js": "text/javascript; charset=utf-8"}


@cache
def _read(name: str) -> bytes:
    return resources.files("imagegate").joinpath("static", name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=FILES[name],
                    headers={"Cache-Control": "no-cache",
                             "Content-Security-Policy": "default-src 'self'; img-src 'self' "
                             "data: blob: http: https:; connect-src 'self'; "
                             "frame-ancestors 'none'"})


@router.get("/playground")
async def page() -> Response:
    return _file("playground.html")


@router.get("/playground/{name}")
async def asset(name: str) -> Response:
    if name not in FILES:
        raise NoApi(f"no file {shown(name)}")
    return _file(name)

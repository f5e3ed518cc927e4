"""What every console page shares: templates, headers, the session and the CSRF check.

Pages are rendered on the server (Jinja2, autoescaped) and change things only through
POSTed forms. A form is accepted when the session cookie is valid (HttpOnly,
SameSite=Strict), its hidden ``csrf`` field matches the session's token, and the browser's
Origin (or Referer) is this site. Nothing on a page is readable without the session.
"""

from __future__ import annotations

import datetime as dt
import hmac
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from imagegate.api.deps import gateway
from imagegate.core.accounts.admin_access import ConsoleSession, find_session
from imagegate.core.accounts.money import format_credits
from imagegate.core.errors import ApiError, BadRequest, Forbidden, NoApi, RequestTooLarge

PREFIX = "/admin/console"
COOKIE = "imagegate_admin"
MAX_FORM = 64 * 1024
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: http: https:; script-src 'self'; "
        "style-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SignInRequired(Exception):
    """No valid console session: pages send the browser to the sign-in form."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


def page_number(value: str | None) -> int:
    """A ``page`` query parameter; anything odd is the first page."""
    try:
        return max(1, min(int(value or 1), 10**6))
    except ValueError:
        return 1


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


@cache
def templates() -> Environment:
    env = Environment(loader=PackageLoader("imagegate", "templates/admin"),
                      autoescape=select_autoescape(default=True), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(when=when, seconds=seconds, credits=format_credits, query=urlencode)
    return env


def render(request: Request, name: str, http_status: int = 200, *,
           session: ConsoleSession | None = None, headers: dict[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(
        prefix=PREFIX, path=request.url.path, session=session, **context)
    return HTMLResponse(html, status_code=http_status, headers={**HEADERS, **(headers or {})})


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers=HEADERS)


def admin_key(request: Request) -> str:
    key = gateway(request).settings.admin_key
    if not key:
        raise NoApi(f"no API at {request.url.path}")
    return key


async def current_session(request: Request) -> ConsoleSession | None:
    return await find_session(gateway(request).sessions, admin_key(request),
                              request.cookies.get(COOKIE))


async def signed_in(request: Request) -> ConsoleSession:
    """The page's session; without one the browser is sent to sign in and come back."""
    found = await current_session(request)
    if found is None:
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(back if request.method == "GET" else request.url.path)
    return found


def same_origin(request: Request) -> bool:
    """The browser says where the form came from; it must be this site. A request that
    says nothing (some privacy tools strip both headers) still needs the CSRF token."""
    ours = {f"{request.url.scheme}://{request.url.netloc}".lower()}
    if base := gateway(request).settings.public_base_url:
        parts = urlsplit(base)
        ours.add(f"{parts.scheme}://{parts.netloc}".lower())
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower() in ours
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() in ours
    return True


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form body (what console forms send), size-capped."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise BadRequest("send the console's form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise RequestTooLarge(f"form is over the {MAX_FORM} byte limit")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=200,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form could not be read") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form[key] = f"{form[key]},{value}" if key in form else value  # checkboxes repeat
    return form


async def checked_form(request: Request, session: ConsoleSession) -> dict[str, str]:
    """The form, once it is known to come from a console page of this session."""
    if not same_origin(request):
        raise Forbidden("this form was sent from another site; open the console and use "
                        "its own forms")
    form = await read_form(request)
    token = form.get("csrf", "")
    if not hmac.compare_digest(token.encode(), session.csrf_token.encode()):
        raise Forbidden("the form's security token is missing or stale; reload the page "
                        "and try again")
    return form


def failure(request: Request, error: ApiError, session: ConsoleSession | None) -> HTMLResponse:
    """A console action that was refused, as a page rather than the API's JSON."""
    return render(request, "error.html", error.status, session=session, error=error,
                  headers=error.headers)

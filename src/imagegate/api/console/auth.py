"""Signing in to the console with the admin key, and out again."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegate.api.admin import client_address
from imagegate.api.console.web import (
    COOKIE,
    PREFIX,
    admin_key,
    checked_form,
    current_session,
    failure,
    read_form,
    redirect,
    render,
    same_origin,
    signed_in,
)
from imagegate.api.deps import gateway
from imagegate.core.accounts import admin_access
from imagegate.core.errors import ApiError, Forbidden

router = APIRouter(prefix=PREFIX, include_in_schema=False)  # pages, not API
HOME = f"{PREFIX}/credentials"


def _next(value: str | None) -> str:
    """Only a console page of this site: never an open redirect."""
    if value and value.startswith(PREFIX + "/") and "//" not in value and "\\" not in value:
        return value
    return HOME


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    admin_key(request)
    back = _next(request.query_params.get("next"))
    if await current_session(request) is not None:
        return redirect(back)
    return render(request, "sign_in.html", back=back,
                  signed_out=request.query_params.get("signed_out") == "1")


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    key = admin_key(request)
    gw = gateway(request)
    back = HOME
    try:
        if not same_origin(request):
            raise Forbidden("sign in from the console's own page")
        form = await read_form(request)
        back = _next(form.get("next"))
        address = client_address(request)
        await admin_access.check_key(gw.limiter, key, gw.settings.admin_login_limit,
                                     form.get("key", ""), address)
    except ApiError as e:
        return render(request, "sign_in.html", e.status, problem=e.message,
                      headers=e.headers, back=back)
    cookie, _ = await admin_access.open_session(gw.sessions, key, address)
    response = redirect(back)
    response.set_cookie(COOKIE, cookie, max_age=admin_access.SESSION_SECONDS, path="/admin",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await signed_in(request)
    try:
        await checked_form(request, session)
    except ApiError as e:
        return failure(request, e, session)
    await admin_access.close_session(gateway(request).sessions, session.id)
    response = redirect(f"{PREFIX}/sign-in?signed_out=1")
    response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict")
    return response

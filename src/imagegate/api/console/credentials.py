"""Console pages for credentials: list and search, create (token shown once), edit, top
up, disable/enable and delete. The same core functions as the JSON admin API."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegate.api.console.web import (
    PREFIX,
    checked_form,
    failure,
    page_number,
    redirect,
    render,
    signed_in,
)
from imagegate.api.deps import gateway
from imagegate.core.accounts import manage as accounts
from imagegate.core.accounts.admin_access import ConsoleSession
from imagegate.core.accounts.credentials import KNOWN_SCOPES
from imagegate.core.errors import ApiError, BadRequest
from imagegate.db.models import Credential

router = APIRouter(prefix=PREFIX, include_in_schema=False)  # pages, not API
PAGE = 100
DONE = {"created": "Credential created.", "saved": "Changes saved.",
        "topup": "Credits added.", "disabled": "Credential disabled: its token answers 403.",
        "enabled": "Credential enabled.", "deleted": "Credential deleted: its token answers 401."}


def status_of(cred: Credential) -> str:
    if cred.deleted_at is not None:
        return "deleted"
    if cred.disabled:
        return "disabled"
    if cred.expires_at is not None and cred.expires_at <= time.time():
        return "expired"
    return "active"


@router.get("/credentials")
async def listing(request: Request) -> Response:
    session = await signed_in(request)
    return await _listing(request, session)


async def _listing(request: Request, session: ConsoleSession, *, error: ApiError | None = None,
                   form: dict[str, str] | None = None) -> Response:
    q = request.query_params.get("q", "")[:200]
    deleted = request.query_params.get("deleted") == "1"
    page = page_number(request.query_params.get("page"))
    gw = gateway(request)
    async with gw.sessions() as db:
        creds, count = await accounts.search(db, q, include_deleted=deleted,
                                             offset=(page - 1) * PAGE, limit=PAGE)
    return render(request, "credentials.html", error.status if error else 200,
                  session=session, creds=creds, count=count, q=q, deleted=deleted, page=page,
                  pages=max(1, -(-count // PAGE)), status_of=status_of, error=error,
                  form=form or {}, scopes=KNOWN_SCOPES, settings=gw.settings,
                  done=DONE.get(request.query_params.get("done", "")))


@router.post("/credentials")
async def create(request: Request) -> Response:
    session = await signed_in(request)
    form: dict[str, str] = {}
    try:
        form = await checked_form(request, session)
        async with gateway(request).sessions.begin() as db:
            issued = await accounts.create(
                db, name=form.get("name", "").strip() or "default",
                application=form.get("application", "").strip() or "default",
                credits=_credits(form.get("credits", "") or "0"),
                scopes=_scopes(form) or None, expires_at=_expires(form),
                rate_limits=_limits(form))
            described = accounts.describe(issued.credential)
    except ApiError as e:
        if not form:
            return failure(request, e, session)
        return await _listing(request, session, error=e, form=form)
    return render(request, "created.html", 201, session=session, cred=described,
                  token=issued.token, webhook_secret=issued.credential.webhook_secret)


@router.get("/credentials/{credential_id}")
async def detail(credential_id: str, request: Request) -> Response:
    session = await signed_in(request)
    return await _detail(request, session, credential_id)


async def _detail(request: Request, session: ConsoleSession, credential_id: str, *,
                  error: ApiError | None = None) -> Response:
    gw = gateway(request)
    try:
        async with gw.sessions() as db:
            cred = await accounts.get(db, credential_id, include_deleted=True)
            usage = await accounts.usage(db, credential_id)
    except ApiError as e:
        return failure(request, e, session)
    return render(request, "credential.html", error.status if error else 200, session=session,
                  cred=cred, usage=usage, status=status_of(cred), scopes=KNOWN_SCOPES,
                  settings=gw.settings, error=error, expires=_expires_value(cred.expires_at),
                  done=DONE.get(request.query_params.get("done", "")))


Action = Callable[[dict[str, str]], Awaitable[Any]]


async def _act(request: Request, credential_id: str, done: str, work: Action) -> Response:
    """Check the form, do the work, tell every node, and go back to the credential."""
    session = await signed_in(request)
    gw = gateway(request)
    try:
        form = await checked_form(request, session)
        await work(form)
    except ApiError as e:
        if e.status == 400:
            return await _detail(request, session, credential_id, error=e)
        return failure(request, e, session)
    gw.credentials.invalidate(credential_id)
    return redirect(f"{PREFIX}/credentials/{quote(credential_id, safe='')}?done={done}")


@router.post("/credentials/{credential_id}")
async def edit(credential_id: str, request: Request) -> Response:
    async def work(form: dict[str, str]) -> None:
        values = {
            "name": accounts.check_text(form.get("name", ""), "name"),
            "application": accounts.check_text(form.get("application", ""), "application"),
            "scopes": accounts.check_scopes(_scopes(form)),
            "expires_at": _expires(form), "rate_limits": _limits(form)}
        async with gateway(request).sessions.begin() as db:
            await accounts.update_fields(db, credential_id, **values)
    return await _act(request, credential_id, "saved", work)


@router.post("/credentials/{credential_id}/topup")
async def topup(credential_id: str, request: Request) -> Response:
    async def work(form: dict[str, str]) -> None:
        async with gateway(request).sessions.begin() as db:
            await accounts.top_up(db, credential_id, _credits(form.get("credits", "")))
    return await _act(request, credential_id, "topup", work)


@router.post("/credentials/{credential_id}/disable")
async def disable(credential_id: str, request: Request) -> Response:
    async def work(_: dict[str, str]) -> None:
        async with gateway(request).sessions.begin() as db:
            await accounts.update_fields(db, credential_id, disabled=True)
    return await _act(request, credential_id, "disabled", work)


@router.post("/credentials/{credential_id}/enable")
async def enable(credential_id: str, request: Request) -> Response:
    async def work(_: dict[str, str]) -> None:
        async with gateway(request).sessions.begin() as db:
            await accounts.update_fields(db, credential_id, disabled=False)
    return await _act(request, credential_id, "enabled", work)


@router.post("/credentials/{credential_id}/delete")
async def delete(credential_id: str, request: Request) -> Response:
    async def work(_: dict[str, str]) -> None:
        async with gateway(request).sessions.begin() as db:
            await accounts.remove(db, credential_id)
    return await _act(request, credential_id, "deleted", work)


def _credits(text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise BadRequest(f"credits must be a number; got {text.strip()!r}") from None


def _scopes(form: dict[str, str]) -> list[str]:
    return [s for s in form.get("scopes", "").split(",") if s]


def _limits(form: dict[str, str]) -> dict[str, int] | None:
    limits: dict[str, Any] = {}
    for key in accounts.LIMIT_KEYS:
        text = form.get(key, "").strip()
        if not text:
            continue
        try:
            limits[key] = int(text)
        except ValueError:
            raise BadRequest(f"rate_limits.{key} must be an integer from 1 to "
                             f"{accounts.MAX_LIMIT:,}; got {text!r}") from None
    return accounts.check_limits(limits) if limits else None


def _expires(form: dict[str, str]) -> float | None:
    """A ``datetime-local`` value, read as UTC (the page says so); empty for never."""
    text = form.get("expires_at", "").strip()
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"expires_at must be a date and time like 2027-01-31T12:00; "
                         f"got {text!r}") from None
    return moment.replace(tzinfo=moment.tzinfo or dt.UTC).timestamp()


def _expires_value(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M")

"""The admin API under /admin/: manage credentials. Absent unless IMAGEGATE_ADMIN_KEY is set."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from imagegate.api.body import read_json_object
from imagegate.api.deps import gateway
from imagegate.core import accounts
from imagegate.core.errors import BadRequest, InvalidToken, NoApi

router = APIRouter(prefix="/admin")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def admin(request: Request) -> None:
    key = gateway(request).settings.admin_key
    if not key:
        raise NoApi(f"no API at {request.url.path}")
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else (
        request.headers.get("x-admin-key", ""))
    if not given or not hmac.compare_digest(given.encode(), key.encode()):
        raise InvalidToken("missing or wrong admin key")


def _text(body: dict[str, Any], field: str, default: str | None = None) -> str | None:
    value = body.get(field, default)
    if value is not None and (not isinstance(value, str) or not value.strip()
                              or len(value) > 200):
        raise BadRequest(f"{field} must be a non-empty string of at most 200 characters")
    return value


def _number(body: dict[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise BadRequest(f"{field} must be a number")
    return value


def _scopes(body: dict[str, Any]) -> list[str] | None:
    value = body.get("scopes")
    if value is not None and (not isinstance(value, list) or not value
                              or not all(isinstance(s, str) and s for s in value)):
        raise BadRequest("scopes must be a non-empty list of strings")
    return value


@router.post("/credentials", dependencies=[Depends(admin)])
async def create(request: Request) -> Response:
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    async with gw.sessions.begin() as session:
        issued = await accounts.create(
            session, name=_text(body, "name", "default") or "default",
            application=_text(body, "application", "default") or "default",
            credits=_number(body, "credits") or 0.0, scopes=_scopes(body),
            expires_at=_number(body, "expires_at"),
            rate_limits=accounts.check_limits(body.get("rate_limits")))
    cred = issued.credential
    return _json({**accounts.describe(cred), "token": issued.token,
                  "webhook_secret": cred.webhook_secret}, 201)


@router.get("/credentials", dependencies=[Depends(admin)])
async def listing(request: Request) -> Response:
    async with gateway(request).sessions() as session:
        creds = await accounts.listing(session)
    return _json({"items": [accounts.describe(c) for c in creds], "count": len(creds)})


@router.get("/credentials/{credential_id}", dependencies=[Depends(admin)])
async def one(credential_id: str, request: Request) -> Response:
    async with gateway(request).sessions() as session:
        return _json(accounts.describe(await accounts.get(session, credential_id)))


@router.patch("/credentials/{credential_id}", dependencies=[Depends(admin)])
async def change(credential_id: str, request: Request) -> Response:
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    values: dict[str, Any] = {}
    if "name" in body:
        values["name"] = _text(body, "name")
    if "scopes" in body:
        values["scopes"] = _scopes(body)
    if "expires_at" in body:
        values["expires_at"] = _number(body, "expires_at")
    if "rate_limits" in body:
        values["rate_limits"] = accounts.check_limits(body["rate_limits"])
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise BadRequest("disabled must be true or false")
        values["disabled"] = body["disabled"]
    if not values:
        raise BadRequest("nothing to change: send name, scopes, expires_at, rate_limits or "
                         "disabled")
    return await _changed(request, credential_id, **values)


async def _changed(request: Request, credential_id: str, **values: Any) -> Response:
    gw = gateway(request)
    async with gw.sessions.begin() as session:
        cred = await accounts.update_fields(session, credential_id, **values)
        described = accounts.describe(cred)
    gw.credentials.invalidate(credential_id)
    return _json(described)


@router.post("/credentials/{credential_id}/disable", dependencies=[Depends(admin)])
async def disable(credential_id: str, request: Request) -> Response:
    return await _changed(request, credential_id, disabled=True)


@router.post("/credentials/{credential_id}/enable", dependencies=[Depends(admin)])
async def enable(credential_id: str, request: Request) -> Response:
    return await _changed(request, credential_id, disabled=False)


@router.post("/credentials/{credential_id}/topup", dependencies=[Depends(admin)])
async def topup(credential_id: str, request: Request) -> Response:
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    credits = _number(body, "credits")
    if credits is None:
        raise BadRequest("credits is required")
    async with gw.sessions.begin() as session:
        described = accounts.describe(await accounts.top_up(session, credential_id, credits))
    return _json(described)


@router.delete("/credentials/{credential_id}", dependencies=[Depends(admin)])
async def remove(credential_id: str, request: Request) -> Response:
    gw = gateway(request)
    async with gw.sessions.begin() as session:
        await accounts.remove(session, credential_id)
    gw.credentials.invalidate(credential_id)
    return _json({"deleted": credential_id})


@router.get("/credentials/{credential_id}/usage", dependencies=[Depends(admin)])
async def usage(credential_id: str, request: Request) -> Response:
    async with gateway(request).sessions() as session:
        return _json(await accounts.usage(session, credential_id))

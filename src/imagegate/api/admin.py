"""The admin API under /admin/: manage credentials. Absent unless IMAGEGATE_ADMIN_KEY is set."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from imagegate.api.body import read_json_object
from imagegate.api.deps import gateway
from imagegate.api.openapi import JSON_BODY, doc
from imagegate.core.accounts import admin_access
from imagegate.core.accounts import manage as accounts
from imagegate.core.errors import BadRequest, NoApi
from imagegate.core.text import shown

router = APIRouter(prefix="/admin")


def _doc(summary: str, ok: str, body: str | None = None, status: int = 200) -> dict[str, Any]:
    """Every admin route: the admin key; 404 for no such credential (or no admin API); 429
    once too many wrong keys came from one address."""
    errors = (400, 401, 404, 429, *(JSON_BODY if body else ()))
    return {"dependencies": [Depends(admin)], **doc(summary, "admin", ok=ok, body=body,
                                                    status=status, errors=errors,
                                                    auth="adminKey")}


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def admin_key_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else (
        request.headers.get("x-admin-key", ""))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def admin(request: Request) -> None:
    """The admin key (``authorization: Bearer`` or ``x-admin-key``); wrong ones throttled."""
    gw = gateway(request)
    key = gw.settings.admin_key
    if not key:
        raise NoApi(f"no API at {shown(request.url.path)}")
    await admin_access.check_key(gw.limiter, key, gw.settings.admin_login_limit,
                                 admin_key_of(request), client_address(request))


CREATE_FIELDS = ("name", "application", "credits", "scopes", "expires_at", "rate_limits")
CHANGE_FIELDS = ("name", "application", "scopes", "expires_at", "rate_limits", "disabled")


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field {shown(unknown[0])}; accepted: {', '.join(allowed)}")


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be true or false")
    return value


def _given(body: dict[str, Any], field: str) -> Any:
    """The value, refusing an explicit null where null means nothing."""
    if field in body and body[field] is None:
        raise BadRequest(f"{field} must not be null")
    return body.get(field)


@router.post("/credentials",
             **_doc("Create a credential", "IssuedCredential", "NewCredential", 201))
async def create(request: Request) -> Response:
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    _only(body, CREATE_FIELDS)
    async with gw.sessions.begin() as session:
        issued = await accounts.create(
            session, name=body.get("name", "default"),
            application=body.get("application", "default"),
            credits=body.get("credits", 0), scopes=_given(body, "scopes"),
            expires_at=body.get("expires_at"), rate_limits=body.get("rate_limits"))
    cred = issued.credential
    return _json({**accounts.describe(cred), "token": issued.token,
                  "webhook_secret": cred.webhook_secret}, 201)


@router.get("/credentials", **_doc("List credentials", "CredentialList"))
async def listing(request: Request) -> Response:
    """Deleted credentials only with ``?include_deleted=true`` (their usage stays readable)."""
    deleted = request.query_params.get("include_deleted", "").lower() in ("1", "true", "yes")
    async with gateway(request).sessions() as session:
        creds = await accounts.listing(session, include_deleted=deleted)
    return _json({"items": [accounts.describe(c) for c in creds], "count": len(creds)})


@router.get("/credentials/{credential_id}", **_doc("One credential", "Credential"))
async def one(credential_id: str, request: Request) -> Response:
    async with gateway(request).sessions() as session:
        return _json(accounts.describe(await accounts.get(session, credential_id)))


@router.patch("/credentials/{credential_id}",
              **_doc("Change a credential", "Credential", "CredentialChange"))
async def change(credential_id: str, request: Request) -> Response:
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    _only(body, CHANGE_FIELDS)
    checks = {"name": lambda v: accounts.check_text(v, "name"),
              "application": lambda v: accounts.check_text(v, "application"),
              "scopes": accounts.check_scopes, "expires_at": accounts.check_expires_at,
              "rate_limits": accounts.check_limits,
              "disabled": lambda v: _bool(v, "disabled")}
    values = {field: check(body[field]) for field, check in checks.items() if field in body}
    if not values:
        raise BadRequest(f"nothing to change: send any of {', '.join(CHANGE_FIELDS)}")
    return await _changed(request, credential_id, **values)


async def _changed(request: Request, credential_id: str, **values: Any) -> Response:
    gw = gateway(request)
    async with gw.sessions.begin() as session:
        cred = await accounts.update_fields(session, credential_id, **values)
        described = accounts.describe(cred)
    gw.credentials.invalidate(credential_id)
    return _json(described)


@router.post("/credentials/{credential_id}/disable", **_doc("Disable", "Credential"))
async def disable(credential_id: str, request: Request) -> Response:
    return await _changed(request, credential_id, disabled=True)


@router.post("/credentials/{credential_id}/enable", **_doc("Enable", "Credential"))
async def enable(credential_id: str, request: Request) -> Response:
    return await _changed(request, credential_id, disabled=False)


@router.post("/credentials/{credential_id}/topup",
             **_doc("Add credits", "Credential", "TopUp"))
async def topup(credential_id: str, request: Request) -> Response:
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    _only(body, ("credits",))
    if "credits" not in body:
        raise BadRequest("credits is required")
    credits = body["credits"]
    async with gw.sessions.begin() as session:
        described = accounts.describe(await accounts.top_up(session, credential_id, credits))
    return _json(described)


@router.delete("/credentials/{credential_id}", **_doc("Delete (soft)", "Deleted"))
async def remove(credential_id: str, request: Request) -> Response:
    gw = gateway(request)
    async with gw.sessions.begin() as session:
        await accounts.remove(session, credential_id)
    gw.credentials.invalidate(credential_id)
    return _json({"deleted": credential_id})


@router.get("/credentials/{credential_id}/usage", **_doc("Usage and ledger", "Usage"))
async def usage(credential_id: str, request: Request) -> Response:
    async with gateway(request).sessions() as session:
        await accounts.get(session, credential_id, include_deleted=True)
        return _json(await accounts.usage(session, credential_id))

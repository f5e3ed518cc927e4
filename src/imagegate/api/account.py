"""A credential's own view (/api/credentials/me) and optional self-service issuance."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from limits import parse

from imagegate.api.deps import credential, gateway
from imagegate.api.openapi import AUTH, doc
from imagegate.core.accounts import manage as accounts
from imagegate.core.errors import NoApi
from imagegate.core.text import shown
from imagegate.db.models import Credential

router = APIRouter()


@router.get("/api/credentials/me", **doc("Your credential, balance and usage", "account",
                                          ok="Usage", auth="token", errors=AUTH))
async def me(request: Request, cred: Credential = Depends(credential)) -> Response:
    async with gateway(request).sessions() as session:
        body = await accounts.usage(session, cred.id)
    return Response(orjson.dumps(body), media_type="application/json")


@router.post("/api/credentials", **doc(
    "Issue a token with the free credits (when IMAGEGATE_SELF_SERVICE is on)", "account",
    ok="IssuedCredential", status=201, errors=(404, 429)))
async def self_service(request: Request) -> Response:
    """Issue a token with the configured free credits (off unless IMAGEGATE_SELF_SERVICE)."""
    gw = gateway(request)
    settings = gw.settings
    if not settings.self_service:
        raise NoApi(f"no API at {shown(request.url.path)}")
    address = request.client.host if request.client else "unknown"
    await gw.limiter.hit_item("ip", address, parse(settings.self_service_limit),
                              settings.self_service_limit.replace("/", " per "))
    async with gw.sessions.begin() as session:
        issued = await accounts.create(session, name=f"self-service {address}",
                                       application="self-service",
                                       credits=settings.free_credits)
    cred = issued.credential
    return Response(orjson.dumps({**accounts.describe(cred), "token": issued.token,
                                  "webhook_secret": cred.webhook_secret}),
                    status_code=201, media_type="application/json")

"""Request-scoped helpers shared by the routes."""

from __future__ import annotations

from fastapi import Request

from imagegate.core.gateway import Gateway
from imagegate.db.models import Credential

IMAGES_SCOPE = "openai-images"


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


async def credential(request: Request) -> Credential:
    """The caller's credential, counted against its requests-per-second limit."""
    gw = gateway(request)
    cred = await gw.authenticate(request.headers.get("authorization"), IMAGES_SCOPE)
    await gw.limiter.hit("credential", cred.id, gw.limits(cred).rps)
    return cred


async def polling_credential(request: Request) -> Credential:
    """Task queries have their own (free) allowance, apart from generation requests."""
    gw = gateway(request)
    cred = await gw.authenticate(request.headers.get("authorization"), IMAGES_SCOPE)
    await gw.limiter.hit("polling", cred.id, gw.limits(cred).poll_rps)
    return cred

"""Request-scoped helpers shared by the routes."""

from __future__ import annotations

from fastapi import Request

from imagegate.core.gateway import Gateway
from imagegate.db.models import Credential

IMAGES_SCOPE = "openai-images"


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


async def credential(request: Request) -> Credential:
    return await gateway(request).authenticate(request.headers.get("authorization"),
                                               IMAGES_SCOPE)

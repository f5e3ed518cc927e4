"""Models list, hosted files and health checks."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from imagegate.api.deps import credential, gateway
from imagegate.api.openapi import AUTH, doc
from imagegate.core import metrics
from imagegate.core.errors import InvalidToken, NoApi
from imagegate.core.gateway import Gateway
from imagegate.core.text import shown
from imagegate.db.models import Credential
from imagegate.storage.store import content_type_for

router = APIRouter()
IMMUTABLE = "public, max-age=31536000, immutable"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.get("/v1/models", **doc("The models served here", "models", ok="ModelList",
                                 auth="token", errors=AUTH))
async def models(request: Request, _: Credential = Depends(credential)) -> Response:
    gw = gateway(request)
    return _json({"object": "list",
                  "data": [_model(gw, name) for name in gw.registry.models]})


@router.get("/v1/models/{name}", **doc("One model", "models", ok="Model", auth="token",
                                        errors=(*AUTH, 404)))
async def model(name: str, request: Request, _: Credential = Depends(credential)) -> Response:
    """One model, as the OpenAI SDK's ``models.retrieve`` expects."""
    gw = gateway(request)
    if name not in gw.registry.models:
        raise NoApi(f"no model {shown(name)}; available: {', '.join(gw.registry.models)}")
    return _json(_model(gw, name))


def _model(gw: Gateway, name: str) -> dict[str, Any]:
    model = gw.registry.models[name]
    missing = gw.unavailable.get(name)
    return {
        "id": name, "object": "model", "created": gw.started, "owned_by": "imagegate",
        "family": model.family, "available": not missing,
        "unavailable_reason": f"set {' or '.join(missing)}" if missing else None,
        "unsupported": {f: list(v) for f, v in model.unsupported().items()},
        "price": float(model.price),
        "price_tiers": [{**t.model_dump(mode="json", exclude_none=True),
                         "price": float(t.price)} for t in model.tiers],
    }


@router.api_route("/files/{key:path}", methods=["GET", "HEAD"], **doc(
    "A hosted image (immutable)", "files", media="image/*", errors=(404,),
    ok={"type": "string", "format": "binary"}))
async def files(key: str, request: Request) -> Response:
    store = gateway(request).store
    path = store.local_path(key)
    if path is not None:
        return FileResponse(path, media_type=content_type_for(key),
                            headers={"Cache-Control": IMMUTABLE})
    if request.method == "HEAD":
        size = await store.size(key)
        if size is None:
            raise NoApi(f"no file {shown(key)}")
        return Response(media_type=content_type_for(key), headers={
            "Cache-Control": IMMUTABLE, "Content-Length": str(size)})
    found = await store.stream(key)
    if found is None:
        raise NoApi(f"no file {shown(key)}")
    size, chunks = found
    return StreamingResponse(chunks, media_type=content_type_for(key), headers={
        "Cache-Control": IMMUTABLE, "Content-Length": str(size),
    })


@router.get("/metrics", **doc(
    "Prometheus metrics", "health", media="text/plain", ok={"type": "string"}, errors=(401,),
    description="Needs `authorization: Bearer <IMAGEGATE_METRICS_TOKEN>` when that is set."))
async def metrics_endpoint(request: Request) -> Response:
    gw = gateway(request)
    token = gw.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise InvalidToken("metrics need 'authorization: Bearer <metrics token>'")
    await gw.tasks.refresh_gauges()
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.api_route("/healthz", methods=["GET", "HEAD"], **doc("Liveness", "health",
                                                             ok="Health"))
async def healthz() -> Response:
    return _json({"status": "ok"})


@router.api_route("/readyz", methods=["GET", "HEAD"], **doc(
    "Readiness: the database and the image store answer", "health", ok="Ready",
    also={503: "Ready"}))
async def readyz(request: Request) -> Response:
    checks = await gateway(request).ready()
    ok = all(v == "ok" for v in checks.values())
    return _json({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)

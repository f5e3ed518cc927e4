"""POST /openai/images/generations and its /v1 alias."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from imagegate.api.body import read_json_object
from imagegate.api.deps import credential, gateway
from imagegate.core.money import format_credits
from imagegate.db.models import Credential

router = APIRouter()


@router.post("/openai/images/generations")
@router.post("/v1/images/generations")
async def generations(request: Request, cred: Credential = Depends(credential)) -> Response:
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    client_trace = body.get("trace_id")
    if isinstance(client_trace, str) and 0 < len(client_trace) <= 128:
        request.state.trace_id = client_trace
    job = await gw.generation.submit(cred, body, request.state.trace_id)
    outcome = await gw.generation.run_sync(job)
    return Response(orjson.dumps(outcome.body), media_type="application/json",
                    headers={"X-Credits-Charged": format_credits(outcome.credits)})

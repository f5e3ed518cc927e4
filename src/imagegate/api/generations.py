"""POST /openai/images/generations and its /v1 alias."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegate.api.body import read_json_object
from imagegate.api.deps import credential, gateway
from imagegate.api.openapi import AUTH, JSON_BODY, doc
from imagegate.api.streaming import STREAM_HEADERS, replayed, stream_answer, wants_stream
from imagegate.core.accounts.money import format_credits
from imagegate.core.generation import Job
from imagegate.core.routing.params import is_trace_id
from imagegate.core.tasks.idempotency import Idempotency, Replay

router = APIRouter()
DOC = doc(
    "Generate images", "images", body="GenerationRequest", auth="token",
    ok={"anyOf": [{"$ref": "#/components/schemas/GenerationResult"},
                  {"$ref": "#/components/schemas/GenerationAccepted"}]},
    errors=(*AUTH, *JSON_BODY, 409, 504),
    headers={"X-Credits-Charged": {"description": "credits this request cost",
                                   "schema": {"type": "string"}},
             "X-Task-Id": STREAM_HEADERS["X-Task-Id"]}, events="image_generation",
    description="The request's fields depend on the model's family (dalle, gpt-image, "
    "nano-banana); unknown fields are ignored. With `async: true` or a `callback_url` the "
    "answer is the queued task's id. `Idempotency-Key: <key>` makes a retry within 24 h "
    "return the first answer, uncharged. With `stream: true` (gpt-image and nano-banana "
    "models) the answer is Server-Sent Events: partial images, then each image completed.")


@router.post("/openai/images/generations", **DOC)
@router.post("/v1/images/generations", **DOC)
async def generations(request: Request) -> Response:
    # the credential is looked up here, not with Depends: FastAPI's dependency solving
    # costs more than the lookup on the path every image takes
    cred = await credential(request)
    gw = gateway(request)
    body = await read_json_object(request, gw.settings.max_body_bytes)
    if is_trace_id(body.get("trace_id")):
        request.state.trace_id = body["trace_id"]
    key = request.headers.get("idempotency-key")
    if key is not None:
        key = Idempotency.check_key(key)
    request.state.credential = cred.name
    if isinstance(body.get("model"), str) and body["model"] in gw.registry.models:
        request.state.model = body["model"]  # known names only: labels stay bounded
    submitted = await gw.generation.submit(cred, body, request.state.trace_id, key)
    if isinstance(submitted, Replay):
        request.state.trace_id = submitted.trace_id
        if submitted.mode == "async":
            return _accepted(submitted.task_id, submitted.trace_id, replay=True)
        outcome = await gw.generation.wait_replay(submitted)
        if wants_stream(body):
            return await replayed(request, outcome, "image_generation")
        return _done(outcome.body, 0, replay=True)
    job: Job = submitted
    request.state.trace_id = job.trace_id
    request.state.task_id = job.task_id
    if job.is_async:
        return _accepted(job.task_id, job.trace_id)
    if job.params.stream:
        return await stream_answer(request, job, "image_generation")
    outcome = await gw.generation.run_sync(job)
    return _done(outcome.body, outcome.credits)


def _accepted(task_id: str, trace_id: str, replay: bool = False) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replay else {}
    return Response(orjson.dumps({"task_id": task_id, "trace_id": trace_id}),
                    media_type="application/json", headers=headers)


def _done(body: dict[str, object], credits: int, replay: bool = False) -> Response:
    headers = {"X-Credits-Charged": format_credits(credits)}
    if replay:
        headers["Idempotent-Replayed"] = "true"
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)

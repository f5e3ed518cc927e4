"""POST /openai/images/edits and its /v1 alias (SPEC section 7)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegate.api.deps import credential, gateway
from imagegate.api.edit_form import read_edit
from imagegate.api.generations import _accepted, _done  # one answer shape for both
from imagegate.api.openapi import AUTH, JSON_BODY, doc
from imagegate.api.streaming import STREAM_HEADERS, replayed, stream_answer, wants_stream
from imagegate.core.generation import Job
from imagegate.core.routing.params import is_trace_id
from imagegate.core.tasks.idempotency import Idempotency, Replay

router = APIRouter()
DOC = doc(
    "Edit images", "images", auth="token",
    body={"multipart/form-data": "EditMultipart", "application/json": "EditJson"},
    ok={"anyOf": [{"$ref": "#/components/schemas/GenerationResult"},
                  {"$ref": "#/components/schemas/GenerationAccepted"}]},
    errors=(*AUTH, *JSON_BODY, 409, 504),
    headers={"X-Credits-Charged": {"description": "credits this request cost",
                                   "schema": {"type": "string"}},
             "X-Task-Id": STREAM_HEADERS["X-Task-Id"]}, events="image_edit",
    description="SPEC section 7: one to 16 images (and a mask for the gpt-image models and "
    "dall-e-3) as multipart files or as URLs in JSON, with a generation's fields. Every "
    "input problem is a 400 naming the image, before anything is charged. With `stream: "
    "true` the answer is Server-Sent Events (image_edit.partial_image, image_edit.completed).")


@router.post("/openai/images/edits", **DOC)
@router.post("/v1/images/edits", **DOC)
async def edits(request: Request) -> Response:
    cred = await credential(request)
    gw = gateway(request)
    key = request.headers.get("idempotency-key")
    if key is not None:
        key = Idempotency.check_key(key)
    request.state.credential = cred.name
    async with read_edit(request, gw.settings) as form:
        body = form.body
        if is_trace_id(body.get("trace_id")):
            request.state.trace_id = body["trace_id"]
        if isinstance(body.get("model"), str) and body["model"] in gw.registry.models:
            request.state.model = body["model"]  # known names only: labels stay bounded
        # the inputs are read, checked and stored here; the spooled uploads go after
        submitted = await gw.edits.submit(cred, body, form.images, form.mask,
                                          request.state.trace_id, key)
    if isinstance(submitted, Replay):
        request.state.trace_id = submitted.trace_id
        if submitted.mode == "async":
            return _accepted(submitted.task_id, submitted.trace_id, replay=True)
        outcome = await gw.generation.wait_replay(submitted)
        if wants_stream(body):
            return await replayed(request, outcome, "image_edit")
        return _done(outcome.body, 0, replay=True)
    job: Job = submitted
    request.state.trace_id = job.trace_id
    request.state.task_id = job.task_id
    if job.is_async:
        return _accepted(job.task_id, job.trace_id)
    if job.params.stream:
        return await stream_answer(request, job, "image_edit")
    outcome = await gw.generation.run_sync(job)
    return _done(outcome.body, outcome.credits)

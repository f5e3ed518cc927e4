"""The OpenAPI document at /openapi.json and the page at /docs that shows it.

Each route documents itself where it is declared::

    @router.post("/openai/tasks", **doc("Query tasks", "tasks", body="TaskQuery",
                                        ok="TaskOrNothing", errors=JSON_BODY))

``doc`` gives FastAPI the summary, tags, request body and security requirement, and keeps
the answers (each error with the SPEC section 4 body) aside for :func:`document` to put in
place of what FastAPI guessed. A route without ``doc`` is left out of the document (a test
checks that every API route has one).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response

from imagegate import __version__
from imagegate.api.schemas import COMPONENTS, edit_request, generation_requests, ref
from imagegate.core.errors import NoApi
from imagegate.core.routing.registry import Registry
from imagegate.core.text import shown

AUTH = (400, 401, 403, 429)  # token_mismatched, invalid/expired, disabled, rate limited
JSON_BODY = (400, 408, 413, 415)  # bad JSON or fields, slow body, too large, not JSON
ERRORS = {
    400: "bad_request (the message names the field), token_mismatched or api_not_implemented",
    401: "invalid_token or token_expired", 403: "disabled, used_up or forbidden (moderation)",
    404: "no_api: no such thing", 408: "the request body did not arrive in time",
    409: "conflict: an Idempotency-Key reused with a different body",
    413: "request_too_large", 415: "the body is not application/json",
    429: "too_many_requests; see Retry-After", 500: "api_error", 503: "not ready",
    504: "timeout: the image was not ready in time (the task goes on)",
}
SECURITY = {
    "token": {"type": "http", "scheme": "bearer",
              "description": "a credential's token (`imagegate tokens create`)"},
    "adminKey": {"type": "http", "scheme": "bearer",
                 "description": "IMAGEGATE_ADMIN_KEY (or the X-Admin-Key header)"},
    "metricsToken": {"type": "http", "scheme": "bearer",
                     "description": "IMAGEGATE_METRICS_TOKEN, when it is set"},
}
TRACE_HEADER = {"X-Trace-Id": {"description": "this request's trace id (the client's, when "
                                              "it sent one)", "schema": {"type": "string"}}}
X_DOC = "x-imagegate-responses"  # where doc() keeps the answers until document() runs


def doc(summary: str, tag: str, *, ok: str | dict[str, Any] | None = None, status: int = 200,
        body: str | dict[str, str] | None = None, errors: Iterable[int] = (),
        auth: str | None = None,
        description: str | None = None, media: str = "application/json",
        headers: dict[str, Any] | None = None, also: dict[int, str] | None = None,
        events: str | None = None) -> dict[str, Any]:
    """The keyword arguments of a route decorator that document the route.

    ``ok``: the success body's schema name (or a schema); ``body``: the request body's (or
    one per media type);
    ``auth``: a key of SECURITY; ``errors``: the statuses it may answer besides 500 (with
    the error body); ``also``: other answers and their schema names; ``events``: the
    operation streams (``stream: true``), the event types' prefix (SPEC section 8)."""
    answer: dict[str, Any] = {"description": summary,
                              "headers": {**TRACE_HEADER, **(headers or {})}}
    if ok is not None:
        answer["content"] = {media: {"schema": ref(ok) if isinstance(ok, str) else ok}}
    if events is not None:
        answer.setdefault("content", {})["text/event-stream"] = stream_content(events)
    responses: dict[str, Any] = {str(status): answer}
    for code in sorted({*errors, 500}):
        responses[str(code)] = {"description": ERRORS[code], "headers": TRACE_HEADER,
                                "content": {"application/json": {"schema": ref("Error")}}}
    for code, name in (also or {}).items():
        responses[str(code)] = {"description": ERRORS.get(code, name), "headers": TRACE_HEADER,
                                "content": {"application/json": {"schema": ref(name)}}}
    extra: dict[str, Any] = {X_DOC: responses}
    if body is not None:
        bodies = {"application/json": body} if isinstance(body, str) else body
        extra["requestBody"] = {"required": True, "content": {
            media_type: {"schema": ref(name)} for media_type, name in bodies.items()}}
    extra["security"] = [{auth: []}] if auth else []
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "openapi_extra": extra}
    if description:
        out["description"] = description
    return out


def stream_content(prefix: str) -> dict[str, Any]:
    """``stream: true``: Server-Sent Events as OpenAI streams images."""
    return {
        "schema": {
            "type": "object", "description": (
                f"Server-Sent Events: `event: {prefix}.partial_image` (up to `partial_images` "
                f"of them), then one `event: {prefix}.completed` per image, each followed by "
                "`data: <json>` (the ImageStreamEvent schema) and a blank line. A failure after "
                "the first event ends the stream with one `event: error` whose data is the "
                "Error body; nothing is charged then. Headers: X-Task-Id and X-Trace-Id."),
            "properties": {
                "event": {"type": "string", "enum": [f"{prefix}.partial_image",
                                                     f"{prefix}.completed", "error"]},
                "data": {"type": "string", "contentMediaType": "application/json",
                         "contentSchema": {"anyOf": [ref("ImageStreamEvent"), ref("Error")]}}},
            "required": ["event", "data"]},
        "example": (f"event: {prefix}.partial_image\ndata: {{\"type\":\"{prefix}."
                    "partial_image\",\"b64_json\":\"iVBORw0...\",\"partial_image_index\":0,"
                    "\"size\":\"1024x1024\",\"quality\":\"medium\",\"background\":"
                    "\"opaque\",\"output_format\":\"png\",\"created_at\":1777048800}\n\n"
                    f"event: {prefix}.completed\ndata: {{\"type\":\"{prefix}.completed\","
                    "\"b64_json\":\"iVBORw0...\",\"url\":\"https://host/files/...png\","
                    "\"task_id\":\"...\",\"usage\":{...}}\n\n")}


def document(app: FastAPI, request: Request) -> dict[str, Any]:
    """The document, built once."""
    if app.openapi_schema is None:
        app.openapi_schema = build(app, request.app.state.gateway.registry)
    return app.openapi_schema


def build(app: FastAPI, registry: Registry) -> dict[str, Any]:
    """FastAPI's paths, each operation with its own answers, only the operations that
    ``doc`` documents, and the generation request of each model in ``registry``."""
    with warnings.catch_warnings():  # GET and HEAD of one route share an id: renamed below
        warnings.simplefilter("ignore", UserWarning)
        spec = get_openapi(title="imagegate", version=__version__, routes=app.routes,
                           description="An OpenAI-compatible image generation gateway. Every "
                           "error has the body `{success: false, error: {code, message}, "
                           "trace_id}`.")
    for path, operations in list(spec["paths"].items()):
        for method, operation in list(operations.items()):
            responses = operation.pop(X_DOC, None)
            if responses is None:
                del operations[method]
                continue
            operation["responses"] = copy.deepcopy(responses)  # not FastAPI's guesses (422)
            operation["operationId"] = f"{method}_{path}".replace("/", "_").strip("_")
            if method == "head":
                for answer in operation["responses"].values():
                    answer.pop("content", None)
        if not operations:
            del spec["paths"][path]
    body, per_model = generation_requests(registry)
    components = spec.setdefault("components", {})
    components["schemas"] = {**COMPONENTS, **per_model, "GenerationRequest": body,
                             "EditMultipart": edit_request(registry, multipart=True),
                             "EditJson": edit_request(registry, multipart=False)}
    components["securitySchemes"] = SECURITY
    return spec


router = APIRouter(include_in_schema=False)
PAGES = {"docs.html": "text/html; charset=utf-8", "docs.js": "text/javascript; charset=utf-8",
         "docs.css": "text/css; charset=utf-8"}


@cache
def _read(name: str) -> bytes:
    return resources.files("imagegate").joinpath("static", name).read_bytes()


def _page(name: str) -> Response:
    return Response(_read(name), media_type=PAGES[name], headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": "default-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"})


@router.get("/openapi.json")
async def openapi_json(request: Request) -> Response:
    return Response(orjson.dumps(document(request.app, request)),
                    media_type="application/json")


@router.get("/docs")
async def docs_page() -> Response:
    return _page("docs.html")


@router.get("/docs/{name}")
async def docs_asset(name: str) -> Response:
    if name not in PAGES or name == "docs.html":
        raise NoApi(f"no file {shown(name)}")
    return _page(name)

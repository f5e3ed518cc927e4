"""`GET /admin/usage.csv`, `/admin/ledger.csv` and `/admin/tasks/{id}`: for the console
(its session cookie) and for scripts (the admin key, as for the JSON admin API)."""

from __future__ import annotations

import datetime as dt

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from imagegate.api.admin import admin
from imagegate.api.console.web import current_session
from imagegate.api.deps import gateway
from imagegate.api.openapi import doc
from imagegate.core import usage
from imagegate.core.errors import NoApi
from imagegate.core.tasks import browse

router = APIRouter(prefix="/admin")
CSV = "text/csv; charset=utf-8"
TEXT = {"type": "string"}
QUERY = ("Query: `from`, `to` (UTC dates, inclusive), `credential`, `model`, `type`; the admin "
         "key or a console session.")


async def _allowed(request: Request) -> None:
    """A console session, or else the admin key (counted when wrong)."""
    if await current_session(request) is None:
        await admin(request)


def _attachment(name: str, f: usage.UsageFilter) -> dict[str, str]:
    span = "-".join(v for v in (f.query().get("from"), f.query().get("to")) if v)
    stamp = span or dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    return {"Content-Disposition": f'attachment; filename="imagegate-{name}-{stamp}.csv"',
            "Cache-Control": "no-store"}


@router.get("/usage.csv", **doc(
    "Usage as CSV", "admin", ok=TEXT, media="text/csv", errors=(400, 401, 429),
    auth="adminKey", description=QUERY + " `by`: any of day, credential, model, type."))
async def usage_csv(request: Request) -> Response:
    """Query: ``from``, ``to`` (UTC dates, inclusive), ``credential``, ``model``, ``type``
    and ``by`` (any of day, credential, model, type; comma-separated)."""
    await _allowed(request)
    f = usage.usage_filter(dict(request.query_params))
    by = usage.parse_by(request.query_params.get("by"))
    async with gateway(request).sessions() as session:
        rows = await usage.usage(session, f, by)
    return Response(usage.usage_csv(rows, by), media_type=CSV,
                    headers=_attachment("usage", f))


@router.get("/ledger.csv", **doc(
    "The ledger as CSV", "admin", ok=TEXT, media="text/csv", errors=(400, 401, 429),
    auth="adminKey", description=QUERY))
async def ledger_csv(request: Request) -> Response:
    """Every credit movement the filters select (``by`` does not apply), oldest first."""
    await _allowed(request)
    f = usage.usage_filter(dict(request.query_params))
    return StreamingResponse(usage.ledger_csv(gateway(request).sessions, f), media_type=CSV,
                             headers=_attachment("ledger", f))


@router.get("/tasks/{task_id}", **doc(
    "Any credential's task record", "admin", ok={"type": "object"}, errors=(401, 404, 429),
    auth="adminKey"))
async def task_json(task_id: str, request: Request) -> Response:
    """Any credential's task record, as `/openai/tasks` shows it to its owner."""
    await _allowed(request)
    async with gateway(request).sessions() as session:
        found = await browse.one(session, task_id)
    if found is None:
        raise NoApi(f"no task {task_id}")
    return Response(orjson.dumps(found, option=orjson.OPT_INDENT_2),
                    media_type="application/json", headers={"Cache-Control": "no-store"})

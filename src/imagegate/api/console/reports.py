"""Console pages that read: usage with charts, the task list, and health."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagegate.api.console.web import PREFIX, failure, page_number, render, signed_in
from imagegate.api.deps import gateway
from imagegate.core import health, usage
from imagegate.core.accounts import manage as accounts
from imagegate.core.errors import ApiError
from imagegate.core.tasks import browse
from imagegate.core.tasks.queries import TYPES

router = APIRouter(prefix=PREFIX, include_in_schema=False)  # pages, not API
DEFAULT_DAYS = 30


def _params(request: Request) -> dict[str, str]:
    """The query, with the last 30 days as the default range of the usage page."""
    params = dict(request.query_params)
    if "from" not in params and "to" not in params:
        today = dt.datetime.now(dt.UTC).date()
        params["from"] = (today - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        params["to"] = today.isoformat()
    return params


async def _choices(request: Request) -> dict[str, Any]:
    """What the filter forms offer: every credential (deleted ones too) and model."""
    gw = gateway(request)
    async with gw.sessions() as db:
        creds, _ = await accounts.search(db, include_deleted=True, limit=1000)
    return {"credentials": sorted(creds, key=lambda c: (c.name.lower(), c.id)),
            "models": list(gw.registry.models), "types": TYPES}


@router.get("/usage")
async def usage_page(request: Request) -> Response:
    session = await signed_in(request)
    params = _params(request)
    gw = gateway(request)
    try:
        f = usage.usage_filter(params)
        async with gw.sessions() as db:
            daily = await usage.usage(db, f, ("day", "model"))
            by_credential = await usage.usage(db, f, ("credential",))
        chart = usage.chart(daily, f)
    except ApiError as e:
        return failure(request, e, session)
    overall = usage.totals(daily, None)
    return render(request, "usage.html", session=session, f=f, params=params, chart=chart,
                  by_model=usage.totals(daily, "model"),
                  by_credential=usage.totals(by_credential, "credential_id"),
                  overall=overall[0] if overall else None, query=f.query(),
                  **await _choices(request))


@router.get("/tasks")
async def tasks_page(request: Request) -> Response:
    session = await signed_in(request)
    params = dict(request.query_params)
    page = page_number(params.get("page"))
    gw = gateway(request)
    try:
        f = usage.usage_filter(params)
        status = browse.check_status(params.get("status"))
        async with gw.sessions() as db:
            found = await browse.browse(db, f, status=status, offset=(page - 1) * browse.PAGE)
    except ApiError as e:
        return failure(request, e, session)
    query = {**f.query(), **({"status": status} if status else {})}
    return render(request, "tasks.html", session=session, found=found, params=params,
                  page=page, pages=max(1, -(-found.count // browse.PAGE)), query=query,
                  statuses=browse.STATUSES, **await _choices(request))


@router.get("/health")
async def health_page(request: Request) -> Response:
    session = await signed_in(request)
    gw = gateway(request)
    checks = await gw.ready()
    queue = await gw.tasks.refresh_gauges()
    return render(request, "health.html", session=session, checks=checks, queue=queue,
                  channels=health.channels(gw.generation.router), node=gw.node_id,
                  settings=gw.settings)

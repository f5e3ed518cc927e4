"""Task queries: POST /openai/tasks (the seed's form) and GET /v1/tasks/{id}."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from imagegate.api.body import read_json_object
from imagegate.api.deps import gateway, polling_credential
from imagegate.api.openapi import AUTH, JSON_BODY, doc
from imagegate.core.errors import BadRequest
from imagegate.core.tasks.queries import TaskQueries
from imagegate.core.text import shown
from imagegate.db.models import Credential

router = APIRouter()


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _queries(request: Request) -> TaskQueries:
    gw = gateway(request)
    return TaskQueries(gw.sessions, gw.settings.task_query_max_bytes)


@router.post("/openai/tasks", **doc(
    "Query tasks", "tasks", body="TaskQuery", auth="token", errors=(*AUTH, *JSON_BODY),
    ok={"anyOf": [{"$ref": "#/components/schemas/TaskOrNothing"},
                  {"$ref": "#/components/schemas/TaskPage"}]},
    description="`retrieve` answers one task (or `{}`), `retrieve_batch` a page of them. "
    "Polling is free; a credential sees only its own tasks."))
async def tasks(request: Request, cred: Credential = Depends(polling_credential)) -> Response:
    body = await read_json_object(request, gateway(request).settings.max_body_bytes)
    action = body.get("action", "retrieve")
    if action == "retrieve":
        task_id, trace_id = body.get("id"), body.get("trace_id")
        if not isinstance(task_id, str | None) or not isinstance(trace_id, str | None):
            raise BadRequest("id and trace_id must be strings")
        return _json(await _queries(request).get(cred.id, task_id, trace_id))
    if action == "retrieve_batch":
        return _json(await _queries(request).batch(cred.id, body))
    raise BadRequest(f"action must be retrieve or retrieve_batch; got {shown(action)}")


@router.get("/v1/tasks/{task_id}", **doc("One task", "tasks", ok="TaskOrNothing",
                                          auth="token", errors=AUTH))
async def task(task_id: str, request: Request, cred: Credential = Depends(polling_credential)
               ) -> Response:
    return _json(await _queries(request).get(cred.id, task_id=task_id))

"""Task queries (SPEC section 3): a credential sees only its own tasks; polling is free."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Select, false, func, or_, select

from imagegate.core.accounts.money import from_micro
from imagegate.core.errors import BadRequest
from imagegate.core.routing.params import RECORD_FIELDS
from imagegate.core.text import shown, storable
from imagegate.db.engine import Sessions
from imagegate.db.models import Task

TYPES = ("images_generations", "images_edits")
MAX_LIMIT = 100
# tasks stored before requests were trimmed to their family's fields still hold whatever
# their client sent: a record shows only fields some operation keeps
SHOWN_FIELDS = RECORD_FIELDS
ROWS_AT_ONCE = 10  # rows a batch query holds in memory while it fills its answer


def record(task: Task) -> dict[str, Any]:
    """The SPEC section 3 task record.

    ``credits`` is what the task charged the caller: the settled price once it succeeded,
    0 once it failed (its reservation was released), and the amount held while it is
    queued or running."""
    finished = task.finished_at
    elapsed = round(finished - (task.started_at or task.created_at), 3) if finished else None
    callback = None
    if task.callback_url:
        callback = {"url": task.callback_url, **(task.callback or {"state": "waiting",
                                                                   "attempts": []})}
    return {
        "id": task.id, "trace_id": task.trace_id, "type": task.type, "model": task.model,
        "request": _shown_request(task.request), "response": task.response, "status": task.status,
        "created_at": task.created_at, "started_at": task.started_at,
        "finished_at": finished, "elapsed": elapsed, "credential_id": task.credential_id,
        "credits": from_micro(0 if task.status == "failed" else task.credits),
        "attempts": task.attempts, "usage": task.usage,
        "callback": callback,
    }


def _shown_request(request: Any) -> Any:
    if not isinstance(request, dict):
        return request
    return {k: v for k, v in request.items() if k in SHOWN_FIELDS}


def _strings(body: dict[str, Any], field: str) -> list[str] | None:
    """A list of ids; one no database could hold (a NUL) matches nothing."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{field} must be a list of strings")
    if len(value) > MAX_LIMIT:
        raise BadRequest(f"{field} may hold at most {MAX_LIMIT} values")
    return [v for v in value if storable(v)]


def _number(body: dict[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{field} must be a unix timestamp (number); got {shown(value)}")
    return float(value)


def _int(body: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = body.get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{field} must be an integer from {low} to {high}")
    return value


class TaskQueries:
    def __init__(self, sessions: Sessions, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.sessions = sessions
        self.max_bytes = max_bytes

    async def get(self, credential_id: str, task_id: str | None = None,
                  trace_id: str | None = None) -> dict[str, Any]:
        """One task by trace_id (which wins) or id; ``{}`` when it is not the caller's."""
        if not storable(task_id or "") or not storable(trace_id or ""):
            return {}  # no task has such an id
        stmt = select(Task).where(Task.credential_id == credential_id)
        if trace_id:
            stmt = stmt.where(Task.trace_id == trace_id).order_by(Task.created_at.desc())
        elif task_id:
            stmt = stmt.where(Task.id == task_id)
        else:
            raise BadRequest("retrieve needs id or trace_id")
        async with self.sessions() as session:
            task = (await session.execute(stmt.limit(1))).scalar_one_or_none()
        return record(task) if task else {}

    async def batch(self, credential_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One page: at most ``limit`` records and about ``max_bytes`` of them (never less
        than one); ``next_offset`` is where the next page starts, None after the last."""
        ids, trace_ids = _strings(body, "ids"), _strings(body, "trace_ids")
        low, high = _number(body, "created_at_min"), _number(body, "created_at_max")
        kind = body.get("type")
        if kind is not None and kind not in TYPES:
            raise BadRequest(f"type must be one of {', '.join(TYPES)}; got {shown(kind)}")
        offset = _int(body, "offset", 0, 0, 10**9)
        limit = _int(body, "limit", 12, 1, MAX_LIMIT)
        stmt: Select[Any] = select(Task).where(Task.credential_id == credential_id)
        if ids is not None or trace_ids is not None:
            wanted = [c for c in (Task.id.in_(ids) if ids else None,
                                  Task.trace_id.in_(trace_ids) if trace_ids else None)
                      if c is not None]
            stmt = stmt.where(or_(*wanted) if wanted else false())
        if low is not None:
            stmt = stmt.where(Task.created_at >= low)
        if high is not None:
            stmt = stmt.where(Task.created_at <= high)
        if kind is not None:
            stmt = stmt.where(Task.type == kind)
        page = (stmt.order_by(Task.created_at.desc(), Task.id).offset(offset).limit(limit)
                .execution_options(yield_per=ROWS_AT_ONCE))
        items: list[orjson.Fragment] = []  # each record serialized once, as it is measured
        size = 0
        async with self.sessions() as session:
            count = (await session.execute(
                select(func.count()).select_from(stmt.subquery()))).scalar_one()
            rows = await session.stream_scalars(page)
            async for task in rows:
                item = orjson.dumps(record(task))
                if items and size + len(item) > self.max_bytes:
                    break  # the answer is full: the client asks again from next_offset
                items.append(orjson.Fragment(item))
                size += len(item)
            await rows.close()
        following = offset + len(items)
        return {"items": items, "count": int(count),
                "next_offset": following if following < count else None}

"""Task queries (SPEC section 3): a credential sees only its own tasks; polling is free."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, or_, select

from imagegate.core.accounts.money import from_micro
from imagegate.core.errors import BadRequest
from imagegate.db.engine import Sessions
from imagegate.db.models import Task

TYPES = ("images_generations", "images_edits")
MAX_LIMIT = 100


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
        "request": task.request, "response": task.response, "status": task.status,
        "created_at": task.created_at, "started_at": task.started_at,
        "finished_at": finished, "elapsed": elapsed, "credential_id": task.credential_id,
        "credits": from_micro(0 if task.status == "failed" else task.credits),
        "attempts": task.attempts, "usage": task.usage,
        "callback": callback,
    }


def _strings(body: dict[str, Any], field: str) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{field} must be a list of strings")
    if len(value) > MAX_LIMIT:
        raise BadRequest(f"{field} may hold at most {MAX_LIMIT} values")
    return value


def _number(body: dict[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{field} must be a unix timestamp (number)")
    return float(value)


def _int(body: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = body.get(field, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{field} must be an integer from {low} to {high}")
    return value


class TaskQueries:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def get(self, credential_id: str, task_id: str | None = None,
                  trace_id: str | None = None) -> dict[str, Any]:
        """One task by trace_id (which wins) or id; ``{}`` when it is not the caller's."""
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
        ids, trace_ids = _strings(body, "ids"), _strings(body, "trace_ids")
        low, high = _number(body, "created_at_min"), _number(body, "created_at_max")
        kind = body.get("type")
        if kind is not None and kind not in TYPES:
            raise BadRequest(f"type must be one of {', '.join(TYPES)}")
        offset = _int(body, "offset", 0, 0, 10**9)
        limit = _int(body, "limit", 12, 1, MAX_LIMIT)
        stmt: Select[Any] = select(Task).where(Task.credential_id == credential_id)
        if ids is not None or trace_ids is not None:
            stmt = stmt.where(or_(Task.id.in_(ids or []), Task.trace_id.in_(trace_ids or [])))
        if low is not None:
            stmt = stmt.where(Task.created_at >= low)
        if high is not None:
            stmt = stmt.where(Task.created_at <= high)
        if kind is not None:
            stmt = stmt.where(Task.type == kind)
        async with self.sessions() as session:
            count = (await session.execute(
                select(func.count()).select_from(stmt.subquery()))).scalar_one()
            rows = (await session.execute(
                stmt.order_by(Task.created_at.desc(), Task.id).offset(offset).limit(limit)
            )).scalars().all()
        return {"items": [record(t) for t in rows], "count": int(count)}

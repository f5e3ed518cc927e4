"""Every credential's tasks, for the admin: filtered, newest first, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.core.errors import BadRequest
from imagegate.core.tasks.queries import record
from imagegate.core.tasks.store import FAILED, QUEUED, RUNNING, SUCCEEDED
from imagegate.core.usage import UsageFilter, narrow
from imagegate.db.models import Credential, Task

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)
PAGE = 50


@dataclass(frozen=True, slots=True)
class TaskPage:
    items: list[dict[str, Any]]
    count: int
    offset: int
    limit: int


def check_status(value: str | None) -> str | None:
    value = (value or "").strip() or None
    if value is not None and value not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}; got {value!r}")
    return value


async def browse(session: AsyncSession, f: UsageFilter, *, status: str | None = None,
                 offset: int = 0, limit: int = PAGE) -> TaskPage:
    stmt: Select[Any] = narrow(select(Task), f)
    if status:
        stmt = stmt.where(Task.status == status)
    count = (await session.execute(select(func.count()).select_from(stmt.subquery())))
    rows = (await session.execute(
        stmt.order_by(Task.created_at.desc(), Task.id).offset(offset).limit(limit)
    )).scalars().all()
    names = dict((await session.execute(
        select(Credential.id, Credential.name)
        .where(Credential.id.in_({t.credential_id for t in rows})))).all()) if rows else {}
    items = [{**record(t), "credential_name": names.get(t.credential_id),
              "images": images_of(t), "error": _error(t)} for t in rows]
    return TaskPage(items=items, count=int(count.scalar_one()), offset=offset, limit=limit)


def images_of(task: Task) -> list[str]:
    """The hosted URLs of a succeeded task's images."""
    data = (task.response or {}).get("data") if task.status == SUCCEEDED else None
    if not isinstance(data, list):
        return []
    return [item["url"] for item in data if isinstance(item, dict)
            and isinstance(item.get("url"), str)]


def _error(task: Task) -> dict[str, str] | None:
    if task.status != FAILED:
        return None
    return {"code": task.error_code or "api_error", "message": task.error_message or ""}


async def one(session: AsyncSession, task_id: str) -> dict[str, Any] | None:
    task = await session.get(Task, task_id)
    return record(task) if task else None

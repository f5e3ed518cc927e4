"""Task state transitions in the database.

Every transition is one conditional UPDATE, so with any number of processes a task has at
most one runner, and billing happens in the same transaction as the transition that earns it:
settle on success, release on failure, each exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Update

from imagegate.core import metrics
from imagegate.core.accounts import billing
from imagegate.db.engine import Sessions
from imagegate.db.hot import Hot
from imagegate.db.models import Credential, Task

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"


def _param(name: str, column: object) -> object:
    return bindparam(name, type_=column.type)  # type: ignore[attr-defined]


# Built once: constructing a statement costs several times what executing it does here.
_FINISH = Hot(  # run on the driver (db/hot.py): every request ends here
    update(Task)
    .where(Task.id == _param("b_id", Task.id), Task.status == RUNNING,
           Task.lease_owner == _param("b_owner", Task.lease_owner))
    .values(finished_at=_param("b_now", Task.finished_at), lease_owner=None, lease_until=None,
            **{column: _param(f"b_{column}", getattr(Task, column)) for column in (
                "status", "response", "usage", "upstream", "error_code", "error_message",
                "callback", "callback_next_at")})
)
_claims: dict[tuple[str, bool], Update] = {}


def _claim_statement(dialect: str, per_credential: bool) -> Update:
    """The oldest queued task, taken in one statement (so one claimant per task)."""
    key = (dialect, per_credential)
    if key not in _claims:
        pick = select(Task.id).where(Task.status == QUEUED)
        if per_credential:
            busy = aliased(Task)
            running = (select(func.count()).select_from(busy)
                       .where(busy.credential_id == Task.credential_id,
                              busy.status == RUNNING).scalar_subquery())
            own = (select(func.coalesce(Credential.rate_limits["concurrency"].as_integer(),
                                        bindparam("b_limit")))
                   .where(Credential.id == Task.credential_id).scalar_subquery())
            pick = pick.where(running < own)
        pick = pick.order_by(Task.created_at).limit(1)
        if dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        _claims[key] = (
            update(Task)
            .where(Task.id == pick.scalar_subquery(), Task.status == QUEUED)
            .values(status=RUNNING, lease_owner=bindparam("b_owner"),
                    lease_until=bindparam("b_until"), attempts=Task.attempts + 1,
                    started_at=func.coalesce(Task.started_at, bindparam("b_now")))
            .returning(Task.id, Task.credential_id, Task.trace_id, Task.request,
                       Task.credits, Task.attempts, Task.type))
    return _claims[key]


@dataclass(frozen=True, slots=True)
class QueueStats:
    queued: int
    oldest_age: float  # seconds the oldest queued task has waited; 0 when none
    running: int


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    credential_id: str
    trace_id: str
    request: dict[str, Any]
    credits: int
    attempts: int
    type: str = "images_generations"  # images_edits: the request refers to stored inputs


class TaskStore:
    def __init__(self, sessions: Sessions, *, lease: float = 30.0,
                 max_attempts: int = 3) -> None:
        self.sessions = sessions
        self.lease = lease
        self.max_attempts = max_attempts

    async def claim(self, owner: str, per_credential: int | None = None) -> Claimed | None:
        """Take the oldest queued task, or None. One statement: one claimant per task.

        With ``per_credential`` (the default for credentials without a concurrency limit of
        their own), tasks of a credential already running its limit wait, so one client's
        queue cannot take every worker."""
        now = time.time()
        stmt = _claim_statement(self.sessions.dialect, per_credential is not None)
        async with self.sessions.begin() as session:
            row = (await session.execute(stmt, {
                "b_owner": owner, "b_until": now + self.lease, "b_now": now,
                "b_limit": per_credential})).first()
        return Claimed(*row) if row else None

    async def renew(self, owners: set[str]) -> set[str]:
        """Extend every running task's lease held by ``owners`` in one statement; the ids
        still held (a task missing from it was requeued: its runner must stop)."""
        def work(conn: Connection) -> set[str]:
            rows = conn.execute(
                update(Task).where(Task.lease_owner.in_(owners), Task.status == RUNNING)
                .values(lease_until=time.time() + self.lease).returning(Task.id)).all()
            return {row[0] for row in rows}

        return await self.sessions.write(work, small=False)  # thousands of rows at times

    async def succeed(self, task_id: str, owner: str, credential_id: str, cost: int,
                      response: dict[str, Any], usage: dict[str, Any] | None,
                      upstream: str | None, has_callback: bool) -> bool:
        return await self._finish(task_id, owner, credential_id, cost, has_callback,
                                  status=SUCCEEDED, response=response, usage=usage,
                                  upstream=upstream)

    async def fail(self, task_id: str, owner: str, credential_id: str, cost: int, code: str,
                   message: str, has_callback: bool) -> bool:
        response = {"success": False, "error": {"code": code, "message": message}}
        return await self._finish(task_id, owner, credential_id, cost, has_callback,
                                  status=FAILED, error_code=code, error_message=message,
                                  response=response)

    async def _finish(self, task_id: str, owner: str, credential_id: str, cost: int,
                      has_callback: bool, *, status: str, response: dict[str, Any],
                      usage: dict[str, Any] | None = None, upstream: str | None = None,
                      error_code: str | None = None, error_message: str | None = None
                      ) -> bool:
        now = time.time()
        values = {
            "b_id": task_id, "b_owner": owner, "b_now": now, "b_status": status,
            "b_response": response, "b_usage": usage, "b_upstream": upstream,
            "b_error_code": error_code, "b_error_message": error_message,
            "b_callback": {"state": "pending", "attempts": []} if has_callback else None,
            "b_callback_next_at": now if has_callback else None,
        }

        def work(session: Connection) -> bool:
            if not _FINISH.count(session, values):
                return False  # lost the lease: whoever holds the task now will bill it
            if status == SUCCEEDED:
                billing.settle(session, credential_id, task_id, cost)
            else:
                billing.release(session, credential_id, task_id, cost)
            return True

        return await self.sessions.write(work)

    async def hand_back(self, task_id: str, owner: str) -> None:
        """Shutdown: give a running task back to the queue without counting the attempt."""
        async with self.sessions.begin() as session:
            await session.execute(
                update(Task).where(Task.id == task_id, Task.lease_owner == owner,
                                   Task.status == RUNNING)
                .values(status=QUEUED, lease_owner=None, lease_until=None,
                        attempts=func.max(Task.attempts - 1, 0)
                        if session.bind.dialect.name == "sqlite"
                        else func.greatest(Task.attempts - 1, 0)))

    async def recover(self) -> tuple[int, list[Claimed]]:
        """Requeue tasks whose runner died; return how many, and those to fail instead.

        Tasks out of attempts fail, and so do synchronous ones nobody can come back for
        (no Idempotency-Key: their client's connection died with the runner, and billing
        them for an answer nobody reads would be wrong). They are returned still running
        under a recovery lease, for the caller to fail (and refund) through :meth:`fail`
        with owner ``"recovery"``."""
        now = time.time()
        expired = and_(Task.status == RUNNING, Task.lease_until < now)
        resumable = or_(Task.mode == "async", Task.idempotency_key.is_not(None))
        async with self.sessions.begin() as session:
            requeued = await session.execute(
                update(Task).where(expired, resumable, Task.attempts < self.max_attempts)
                .values(status=QUEUED, lease_owner=None, lease_until=None))
            given_up = (await session.execute(
                update(Task).where(expired)
                .values(lease_owner="recovery", lease_until=now + self.lease)
                .returning(Task.id, Task.credential_id, Task.trace_id, Task.request,
                           Task.credits, Task.attempts, Task.type)
            )).all()
        return requeued.rowcount or 0, [Claimed(*r) for r in given_up]  # type: ignore[attr-defined]

    async def refresh_gauges(self) -> QueueStats:
        """Queue depth, oldest queued task and running count, read when /metrics is scraped
        (and by the admin console, which shows the same numbers)."""
        async with self.sessions() as session:
            rows = (await session.execute(
                select(Task.status, func.count(), func.min(Task.created_at))
                .where(Task.status.in_((QUEUED, RUNNING))).group_by(Task.status)
            )).all()
        found = {status: (count, oldest) for status, count, oldest in rows}
        queued, oldest = found.get(QUEUED, (0, None))
        stats = QueueStats(queued=int(queued), oldest_age=time.time() - oldest if oldest else 0,
                           running=int(found.get(RUNNING, (0, None))[0]))
        metrics.queue_depth.set(stats.queued)
        metrics.oldest_queued_age.set(stats.oldest_age)
        metrics.running_tasks.set(stats.running)
        return stats

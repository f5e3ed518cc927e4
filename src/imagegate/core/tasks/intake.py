"""Admitting tasks in groups: one transaction for every submission that arrived meanwhile.

A write transaction costs the same for one row as for fifty, so under load a single writer
takes whatever is waiting and commits it together; each request still waits for the commit
that holds its own task (durable before the answer). Credits are held per credential with
one conditional UPDATE for the group, falling back to one per task when that would overdraw.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import bindparam, func, insert, or_, select
from sqlalchemy.engine import Connection

from imagegate.core.accounts import billing
from imagegate.core.accounts.money import format_credits
from imagegate.core.errors import ApiError, TooManyRequests, UsedUp
from imagegate.db.engine import Sessions
from imagegate.db.hot import Hot
from imagegate.db.models import Credential, LedgerEntry, Task

log = structlog.get_logger("imagegate.intake")
QUEUED, RUNNING = "queued", "running"
MAX_GROUP = 256
INLINE_GROUP = 32  # larger groups commit in the writer thread, off the event loop

# Built once: constructing a statement costs several times what executing it does here.
_IDS = bindparam("b_ids", expanding=True, type_=Credential.id.type)
_LOCK_CREDENTIALS = (select(Credential.id).where(Credential.id.in_(_IDS))
                     .order_by(Credential.id).with_for_update())
# An IN list is rendered into the SQL anew on every execution (a third of this statement's
# cost, py-spy); equalities are compiled once. SQLite and PostgreSQL read `a = x OR a = y`
# as `a IN (x, y)`, so the (credential_id, status) index serves both.
_LIVE = or_(Task.status == QUEUED, Task.status == RUNNING)
_COUNTS = (select(Task.credential_id, Task.status, func.count())
           .where(Task.credential_id.in_(_IDS), _LIVE)
           .group_by(Task.credential_id, Task.status))
_COUNTS_ONE = Hot(select(Task.credential_id, Task.status, func.count())  # the usual group
                  .where(Task.credential_id == bindparam("b_id", type_=Credential.id.type),
                         _LIVE)
                  .group_by(Task.credential_id, Task.status))
_BALANCE = select(Credential.balance).where(
    Credential.id == bindparam("b_id", type_=Credential.id.type))
_INSERT_TASKS = Hot(insert(Task))
_INSERT_LEDGER = Hot(insert(LedgerEntry))


class SlotsTaken(TooManyRequests):
    """The credential has as many generations in flight as it may (a sync request may wait
    for one to end: core/tasks/slots)."""


@dataclass(eq=False)
class Admission:
    row: dict[str, Any]  # the tasks row
    cost: int
    limit: int  # running tasks (sync) or queued tasks (async) allowed for the credential
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop()
                                       .create_future())

    @property
    def credential_id(self) -> str:
        return str(self.row["credential_id"])

    @property
    def counted_status(self) -> str:
        return QUEUED if self.row["status"] == QUEUED else RUNNING


class Intake:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self._queue: asyncio.Queue[Admission] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def admit(self, row: dict[str, Any], cost: int, limit: int) -> None:
        """Insert the task and hold its cost; raises UsedUp or TooManyRequests."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="imagegate-intake")
        admission = Admission(row, cost, limit)
        self._queue.put_nowait(admission)
        await admission.done

    async def _write_loop(self) -> None:
        while True:
            group = [await self._queue.get()]
            if self._queue.empty():
                await asyncio.sleep(0)  # one turn of the loop: under load, more arrive
            while len(group) < MAX_GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            if not await self._try(group):
                # one bad row (a duplicate idempotency key, a value the database refuses)
                # must not fail its neighbours, other credentials' requests among them:
                # each is tried alone, and only its own error reaches its waiter
                for one in group:
                    await self._try([one])

    async def _try(self, group: list[Admission]) -> bool:
        """False when a group of several failed (nothing was written): try them one by one."""
        try:
            await self._commit(group)
            return True
        except Exception as e:  # noqa: BLE001 - every waiter must hear about it
            if len(group) > 1:
                log.info("intake_group_failed", error=type(e).__name__, size=len(group))
                return False
            log.warning("intake_failed", error=type(e).__name__, size=len(group))
            for one in group:
                if not one.done.done():
                    one.done.set_exception(e)
            return True

    async def _commit(self, group: list[Admission]) -> None:
        now = time.time()
        refused: dict[Admission, ApiError] = {}
        ledger: list[dict[str, Any]] = []

        def work(session: Connection) -> list[Admission]:
            by_credential: dict[str, list[Admission]] = defaultdict(list)
            for one in group:
                by_credential[one.credential_id].append(one)
            ids = sorted(by_credential)
            if session.dialect.name == "postgresql":
                # other nodes' admissions for these credentials wait here, so counts hold
                session.execute(_LOCK_CREDENTIALS, {"b_ids": ids})
            counts = _counts(session, ids)
            for one in group:
                key = (one.credential_id, one.counted_status)
                if counts[key] + 1 > one.limit:
                    queued = one.counted_status == QUEUED
                    what = "queued tasks" if queued else "generations in flight"
                    refused[one] = (TooManyRequests if queued else SlotsTaken)(
                        f"too many {what} for this credential (limit {one.limit})",
                        headers={"Retry-After": "1"})
                else:
                    counts[key] += 1
            for credential_id, items in by_credential.items():
                _reserve(session, credential_id, [o for o in items if o not in refused],
                         refused, ledger, now)
            admitted = [o for o in group if o not in refused]
            _INSERT_TASKS.many(session, [o.row for o in admitted])
            _INSERT_LEDGER.many(session, ledger)
            return admitted

        admitted = await self.sessions.write(work, small=len(group) <= INLINE_GROUP)
        for one in admitted:
            one.done.set_result(None)
        for one, error in refused.items():
            one.done.set_exception(error)

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


def _reserve(session: Connection, credential_id: str, items: list[Admission],
             refused: dict[Admission, ApiError], ledger: list[dict[str, Any]],
             now: float) -> None:
    total = sum(o.cost for o in items)
    if total == 0:
        return
    after = billing.take(session, credential_id, total)
    if after is not None:
        entries = []
        for one in reversed(items):  # balance_after in submission order
            if one.cost:
                entries.append(_entry(one, after, now))
                after += one.cost
        ledger.extend(reversed(entries))
        return
    for one in items:  # not enough for all: admit in order while it lasts
        if one.cost == 0:
            continue
        after = billing.take(session, credential_id, one.cost)
        if after is None:
            balance = session.execute(_BALANCE, {"b_id": credential_id}
                                      ).scalar_one_or_none() or 0
            refused[one] = UsedUp(
                f"not enough credits: this request costs {format_credits(one.cost)}, "
                f"the balance is {format_credits(balance)}")
        else:
            ledger.append(_entry(one, after, now))


def _counts(session: Connection, credential_ids: list[str]) -> defaultdict[tuple[str, str], int]:
    rows = (_COUNTS_ONE.rows(session, {"b_id": credential_ids[0]})
            if len(credential_ids) == 1
            else session.execute(_COUNTS, {"b_ids": credential_ids}).all())
    counts: defaultdict[tuple[str, str], int] = defaultdict(int)
    for credential_id, status, count in rows:
        counts[(credential_id, status)] = int(count)
    return counts


def _entry(one: Admission, balance_after: int, now: float) -> dict[str, Any]:
    return {"credential_id": one.credential_id, "task_id": one.row["id"], "kind": "reserve",
            "amount": -one.cost, "balance_after": balance_after, "created_at": now}

"""Credit movements, inside the caller's write transaction (see ``Sessions.write``).

Every change to a balance is one conditional UPDATE plus a ledger row in the same
transaction, so a balance always equals its ledger's sum and never goes negative.
Admission holds (reserves) are taken in groups by core/tasks/intake.py with the same rule.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from imagegate.core.accounts.money import MAX_MICRO
from imagegate.db.hot import Hot
from imagegate.db.models import Credential, LedgerEntry

_ID = bindparam("b_id", type_=Credential.id.type)
_AMOUNT = bindparam("b_amount", type_=Credential.balance.type)
# the statements of every request run on the driver (db/hot.py)
_ADD = Hot(update(Credential).where(Credential.id == _ID)
           .values(balance=Credential.balance + _AMOUNT)
           .returning(Credential.balance))
_TAKE = Hot(update(Credential).where(Credential.id == _ID, Credential.balance >= _AMOUNT)
            .values(balance=Credential.balance - _AMOUNT)
            .returning(Credential.balance))
_TOP_UP = (update(Credential)
           .where(Credential.id == _ID, Credential.deleted_at.is_(None),
                  Credential.balance <= MAX_MICRO - _AMOUNT)
           .values(balance=Credential.balance + _AMOUNT)
           .returning(Credential.balance))
_INSERT_LEDGER = Hot(insert(LedgerEntry))
_SETTLE = Hot(insert(LedgerEntry).from_select(
    ["credential_id", "task_id", "kind", "amount", "balance_after", "created_at"],
    select(Credential.id, bindparam("b_task", type_=LedgerEntry.task_id.type),
           bindparam("b_kind", type_=LedgerEntry.kind.type),
           bindparam("b_zero", type_=LedgerEntry.amount.type), Credential.balance,
           bindparam("b_now", type_=LedgerEntry.created_at.type))
    .where(Credential.id == _ID)))


def move(session: Connection, credential_id: str, task_id: str | None, kind: str, amount: int
         ) -> int | None:
    """Add ``amount`` (negative to take) unless that would overdraw; the new balance."""
    if amount < 0:
        after = take(session, credential_id, -amount)
    else:
        after = int(_ADD.rows(session, {"b_id": credential_id, "b_amount": amount})[0][0])
    if after is not None:
        _record(session, credential_id, task_id, kind, amount, after)
    return after


def _record(session: Connection, credential_id: str, task_id: str | None, kind: str,
            amount: int, balance_after: int) -> None:
    _INSERT_LEDGER.many(session, [{
        "credential_id": credential_id, "task_id": task_id, "kind": kind, "amount": amount,
        "balance_after": balance_after, "created_at": time.time()}])


def take(session: Connection, credential_id: str, amount: int) -> int | None:
    """Subtract ``amount`` if the balance covers it (never below zero): the new balance, or
    None. Writes no ledger row: the caller does, so holds can be written in groups."""
    rows = _TAKE.rows(session, {"b_id": credential_id, "b_amount": amount})
    return int(rows[0][0]) if rows else None


def release(session: Connection, credential_id: str, task_id: str, cost: int) -> None:
    """Give a failed task's hold back in full."""
    if cost > 0:
        move(session, credential_id, task_id, "release", cost)


def settle(session: Connection, credential_id: str, task_id: str, cost: int) -> None:
    """Turn a hold into a charge: the balance already reflects it, the ledger records it."""
    if cost > 0:
        _SETTLE.count(session, {"b_id": credential_id, "b_task": task_id,
                                "b_kind": "settle", "b_zero": 0, "b_now": time.time()})


def top_up(session: Connection, credential_id: str, amount: int) -> int | None:
    """Add credits to a live credential unless the balance would pass ``MAX_MICRO``; the new
    balance, or None (deleted, or over the cap). One statement: concurrent top-ups cannot
    overshoot it together."""
    row = session.execute(_TOP_UP, {"b_id": credential_id, "b_amount": amount}).first()
    if row is None:
        return None
    _record(session, credential_id, None, "topup", amount, int(row[0]))
    return int(row[0])

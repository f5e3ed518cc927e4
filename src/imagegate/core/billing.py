"""Credit movements, inside the caller's write transaction (see ``Sessions.write``).

Every change to a balance is one conditional UPDATE plus a ledger row in the same
transaction, so a balance always equals its ledger's sum and never goes negative.
Admission holds (reserves) are taken in groups by core/intake.py with the same rule.
"""

from __future__ import annotations

import time

from sqlalchemy import insert, literal, select, update
from sqlalchemy.engine import Connection

from imagegate.db.models import Credential, LedgerEntry


def move(session: Connection, credential_id: str, task_id: str | None, kind: str, amount: int
         ) -> int | None:
    """Add ``amount`` (negative to take) unless that would overdraw; the new balance."""
    stmt = update(Credential).where(Credential.id == credential_id)
    if amount < 0:
        stmt = stmt.where(Credential.balance >= -amount)
    row = session.execute(
        stmt.values(balance=Credential.balance + amount).returning(Credential.balance)
    ).first()
    if row is None:
        return None
    session.execute(insert(LedgerEntry).values(
        credential_id=credential_id, task_id=task_id, kind=kind, amount=amount,
        balance_after=row[0], created_at=time.time()))
    return int(row[0])


def release(session: Connection, credential_id: str, task_id: str, cost: int) -> None:
    """Give a failed task's hold back in full."""
    if cost > 0:
        move(session, credential_id, task_id, "release", cost)


def settle(session: Connection, credential_id: str, task_id: str, cost: int) -> None:
    """Turn a hold into a charge: the balance already reflects it, the ledger records it."""
    if cost > 0:
        session.execute(insert(LedgerEntry).from_select(
            ["credential_id", "task_id", "kind", "amount", "balance_after", "created_at"],
            select(Credential.id, literal(task_id), literal("settle"), literal(0),
                   Credential.balance, literal(time.time()))
            .where(Credential.id == credential_id)))


def top_up(session: Connection, credential_id: str, amount: int) -> int | None:
    return move(session, credential_id, None, "topup", amount)

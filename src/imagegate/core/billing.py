"""Credit movements. Every change to a balance is one conditional UPDATE plus a ledger row,
in the caller's transaction, so the balance always equals the ledger's sum."""

from __future__ import annotations

import time

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.core.errors import UsedUp
from imagegate.core.money import format_credits
from imagegate.db.models import Credential, LedgerEntry


async def _move(session: AsyncSession, credential_id: str, task_id: str | None, kind: str,
                amount: int, *, require_funds: bool = False) -> int | None:
    stmt = update(Credential).where(Credential.id == credential_id)
    if require_funds:
        stmt = stmt.where(Credential.balance >= -amount)
    row = (await session.execute(
        stmt.values(balance=Credential.balance + amount).returning(Credential.balance)
    )).first()
    if row is None:
        return None
    session.add(LedgerEntry(credential_id=credential_id, task_id=task_id, kind=kind,
                            amount=amount, balance_after=row[0], created_at=time.time()))
    return int(row[0])


async def reserve(session: AsyncSession, credential_id: str, task_id: str, cost: int) -> None:
    """Hold ``cost`` micro-credits for a task, or raise 403 used_up. Never goes negative."""
    if cost <= 0:
        return
    after = await _move(session, credential_id, task_id, "reserve", -cost, require_funds=True)
    if after is None:
        balance = (await session.execute(
            select(Credential.balance).where(Credential.id == credential_id)
        )).scalar_one_or_none() or 0
        raise UsedUp(
            f"not enough credits: this request costs {format_credits(cost)}, "
            f"the balance is {format_credits(balance)}"
        )


async def release(session: AsyncSession, credential_id: str, task_id: str, cost: int) -> None:
    """Give a failed task's hold back in full."""
    if cost > 0:
        await _move(session, credential_id, task_id, "release", cost)


async def settle(session: AsyncSession, credential_id: str, task_id: str, cost: int) -> None:
    """Turn a hold into a charge: the balance already reflects it, the ledger records it."""
    if cost > 0:
        await _move(session, credential_id, task_id, "settle", 0)


async def top_up(session: AsyncSession, credential_id: str, amount: int) -> int | None:
    return await _move(session, credential_id, None, "topup", amount)

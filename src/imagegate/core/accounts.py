"""Managing credentials: what the admin API and `imagegate tokens` both do.

Every balance change goes through billing's conditional UPDATE and ledger row, so the
balance always equals the sum of the credential's ledger.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.core import billing
from imagegate.core.credentials import DEFAULT_SCOPES, IssuedCredential, create_credential
from imagegate.core.errors import ApiError, BadRequest
from imagegate.core.money import from_micro, to_micro
from imagegate.db.models import Credential, LedgerEntry, Task

LIMIT_KEYS = ("rps", "poll_rps", "concurrency")


class NotFound(ApiError):
    status, code = 404, "no_api"


def describe(cred: Credential) -> dict[str, Any]:
    """A credential as the admin sees it: everything but the token and its hash."""
    return {
        "id": cred.id, "name": cred.name, "application": cred.application,
        "token_prefix": cred.token_prefix, "scopes": list(cred.scopes),
        "credits": from_micro(cred.balance), "expires_at": cred.expires_at,
        "disabled": cred.disabled, "rate_limits": cred.rate_limits or {},
        "created_at": cred.created_at, "last_used_at": cred.last_used_at,
    }


def check_limits(limits: Any) -> dict[str, int] | None:
    if limits is None:
        return None
    if not isinstance(limits, dict) or set(limits) - set(LIMIT_KEYS):
        raise BadRequest(f"rate_limits must be an object with keys {', '.join(LIMIT_KEYS)}")
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadRequest(f"rate_limits.{key} must be a positive integer")
    return dict(limits)


async def create(session: AsyncSession, *, name: str, credits: float = 0,
                 application: str = "default", scopes: list[str] | None = None,
                 expires_at: float | None = None, rate_limits: dict[str, int] | None = None
                 ) -> IssuedCredential:
    if credits < 0:
        raise BadRequest("credits must not be negative")
    issued = await create_credential(session, name=name, application=application,
                                     credits_micro=to_micro(credits),
                                     scopes=scopes or list(DEFAULT_SCOPES),
                                     expires_at=expires_at)
    if rate_limits:
        issued.credential.rate_limits = rate_limits
    return issued


async def get(session: AsyncSession, credential_id: str) -> Credential:
    cred = await session.get(Credential, credential_id)
    if cred is None:
        raise NotFound(f"no credential {credential_id}")
    return cred


async def find(session: AsyncSession, id_or_prefix: str) -> Credential:
    """By id, or by the token prefix the CLI lists."""
    cred = await session.get(Credential, id_or_prefix)
    if cred is None:
        rows = (await session.execute(select(Credential).where(
            Credential.token_prefix == id_or_prefix[:8]))).scalars().all()
        if len(rows) == 1 and len(id_or_prefix) >= 8:
            cred = rows[0]
    if cred is None:
        raise NotFound(f"no credential {id_or_prefix}")
    return cred


async def listing(session: AsyncSession) -> list[Credential]:
    return list((await session.execute(select(Credential).order_by(Credential.created_at)
                                       )).scalars())


async def update_fields(session: AsyncSession, credential_id: str, **values: Any) -> Credential:
    await get(session, credential_id)
    await session.execute(update(Credential).where(Credential.id == credential_id)
                          .values(**values))
    return await refreshed(session, credential_id)


async def refreshed(session: AsyncSession, credential_id: str) -> Credential:
    cred = await get(session, credential_id)
    await session.refresh(cred)
    return cred


async def top_up(session: AsyncSession, credential_id: str, credits: float) -> Credential:
    amount = to_micro(credits)
    if amount <= 0:
        raise BadRequest("top-up credits must be positive")
    await get(session, credential_id)
    conn = await session.connection()
    await conn.run_sync(lambda c: billing.top_up(c, credential_id, amount))
    return await refreshed(session, credential_id)


async def remove(session: AsyncSession, credential_id: str) -> None:
    """Delete a credential with its tasks and ledger (nothing else refers to them)."""
    await get(session, credential_id)
    await session.execute(delete(Credential).where(Credential.id == credential_id))


async def usage(session: AsyncSession, credential_id: str, recent: int = 10) -> dict[str, Any]:
    cred = await refreshed(session, credential_id)
    by_model = (await session.execute(
        select(Task.model, Task.status, func.count(), func.coalesce(func.sum(Task.credits), 0))
        .where(Task.credential_id == credential_id).group_by(Task.model, Task.status)
    )).all()
    totals: dict[str, dict[str, Any]] = {}
    for model, status, count, credits in by_model:
        entry = totals.setdefault(model, {"tasks": 0, "succeeded": 0, "failed": 0,
                                          "in_progress": 0, "credits": 0.0})
        entry["tasks"] += int(count)
        if status == "succeeded":
            entry["succeeded"] += int(count)
            entry["credits"] = from_micro(int(credits))
        elif status == "failed":
            entry["failed"] += int(count)
        else:
            entry["in_progress"] += int(count)
    tasks = (await session.execute(
        select(Task.id, Task.model, Task.status, Task.credits, Task.created_at)
        .where(Task.credential_id == credential_id)
        .order_by(Task.created_at.desc()).limit(recent))).all()
    ledger_sum = (await session.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.credential_id == credential_id))).scalar_one()
    return {
        "credential": describe(cred),
        "balance": from_micro(cred.balance),
        "ledger_balance": from_micro(int(ledger_sum)),
        "by_model": totals,
        "recent_tasks": [{"id": t.id, "model": t.model, "status": t.status,
                          "credits": from_micro(t.credits), "created_at": t.created_at}
                         for t in tasks],
        "as_of": time.time(),
    }

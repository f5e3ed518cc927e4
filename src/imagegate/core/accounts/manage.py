"""Managing credentials: what the admin API and `imagegate tokens` both do.

Every balance change is one conditional UPDATE plus its ledger row, so the balance always
equals the sum of the credential's ledger. Every change also bumps the credentials
revision in the same transaction: that is how other processes' caches learn of it.
"""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.core.accounts import billing
from imagegate.core.accounts.credentials import (
    BUMP_REVISION,
    DEFAULT_SCOPES,
    KNOWN_SCOPES,
    IssuedCredential,
    create_credential,
)
from imagegate.core.accounts.money import (
    MAX_CREDITS,
    format_credits,
    from_micro,
    parse_credits,
)
from imagegate.core.errors import ApiError, BadRequest
from imagegate.core.text import shown, storable
from imagegate.db.models import Credential, LedgerEntry, Task

LIMIT_KEYS = ("rps", "poll_rps", "concurrency")
MAX_LIMIT = 1_000_000
MAX_TEXT = 200
_NO_SYNC = {"synchronize_session": False}


class NotFound(ApiError):
    status, code = 404, "no_api"


def _missing(credential_id: str) -> NotFound:
    return NotFound(f"no credential {shown(credential_id)}")


def _known_shape(credential_id: str) -> str:
    """An id the database can be asked about (no credential has a NUL in its id)."""
    if not storable(credential_id):
        raise _missing(credential_id)
    return credential_id


def describe(cred: Credential) -> dict[str, Any]:
    """A credential as the admin sees it: everything but the token and its hash."""
    return {
        "id": cred.id, "name": cred.name, "application": cred.application,
        "token_prefix": cred.token_prefix, "scopes": list(cred.scopes),
        "credits": from_micro(cred.balance), "expires_at": cred.expires_at,
        "disabled": cred.disabled, "rate_limits": cred.rate_limits or {},
        "created_at": cred.created_at, "last_used_at": cred.last_used_at,
        "deleted_at": cred.deleted_at,
    }


def check_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise BadRequest(f"{field} must be a non-empty string of at most {MAX_TEXT} characters")
    if not storable(value):
        raise BadRequest(f"{field} must not contain NUL characters")
    return value


def check_scopes(value: Any) -> list[str]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(s, str) for s in value)):
        raise BadRequest(f"scopes must be a non-empty list of: {', '.join(KNOWN_SCOPES)}")
    unknown = sorted(set(value) - set(KNOWN_SCOPES))
    if unknown:
        raise BadRequest(f"scopes: unknown scope {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(KNOWN_SCOPES)}")
    return list(dict.fromkeys(value))


def check_expires_at(value: Any) -> float | None:
    """A Unix time, or None for never (a time in the past expires the credential now)."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 0):
        raise BadRequest("expires_at must be a Unix time in seconds, or null for never")
    return float(value)


def check_limits(limits: Any) -> dict[str, int] | None:
    if limits is None:
        return None
    if not isinstance(limits, dict) or set(limits) - set(LIMIT_KEYS):
        raise BadRequest(f"rate_limits must be an object with keys {', '.join(LIMIT_KEYS)}")
    for key, value in limits.items():
        if (isinstance(value, bool) or not isinstance(value, int)
                or not 1 <= value <= MAX_LIMIT):
            raise BadRequest(f"rate_limits.{key} must be an integer from 1 to {MAX_LIMIT:,}")
    return dict(limits)


async def create(session: AsyncSession, *, name: str, credits: float = 0,
                 application: str = "default", scopes: list[str] | None = None,
                 expires_at: float | None = None, rate_limits: dict[str, int] | None = None
                 ) -> IssuedCredential:
    """Validates everything itself: the admin API, self-service and the CLI all call it."""
    amount = parse_credits(credits)
    if amount < 0:
        raise BadRequest("credits must not be negative")
    limits = check_limits(rate_limits)
    issued = await create_credential(
        session, name=check_text(name, "name"),
        application=check_text(application, "application"), credits_micro=amount,
        scopes=check_scopes(scopes) if scopes is not None else list(DEFAULT_SCOPES),
        expires_at=check_expires_at(expires_at))
    if limits:
        issued.credential.rate_limits = limits
    return issued


async def get(session: AsyncSession, credential_id: str, *, include_deleted: bool = False
              ) -> Credential:
    cred = await session.get(Credential, _known_shape(credential_id))
    if cred is None or (cred.deleted_at is not None and not include_deleted):
        raise _missing(credential_id)
    return cred


async def find(session: AsyncSession, id_or_prefix: str, *, include_deleted: bool = False
               ) -> Credential:
    """By id, or by the token prefix the CLI lists."""
    cred = await session.get(Credential, _known_shape(id_or_prefix))
    if cred is None and len(id_or_prefix) >= 8:
        query = select(Credential).where(Credential.token_prefix == id_or_prefix[:8])
        if not include_deleted:
            query = query.where(Credential.deleted_at.is_(None))
        rows = (await session.execute(query)).scalars().all()
        if len(rows) == 1:
            cred = rows[0]
    if cred is None or (cred.deleted_at is not None and not include_deleted):
        raise _missing(id_or_prefix)
    return cred


async def listing(session: AsyncSession, *, include_deleted: bool = False
                  ) -> list[Credential]:
    query = select(Credential).order_by(Credential.created_at)
    if not include_deleted:
        query = query.where(Credential.deleted_at.is_(None))
    return list((await session.execute(query)).scalars())


async def search(session: AsyncSession, text: str = "", *, include_deleted: bool = False,
                 offset: int = 0, limit: int = 100) -> tuple[list[Credential], int]:
    """Credentials whose name, application, id or token prefix contains ``text`` (any
    case), oldest first, and how many there are in all."""
    query = select(Credential)
    if not include_deleted:
        query = query.where(Credential.deleted_at.is_(None))
    if text := text.strip():
        pattern = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{pattern}%"
        query = query.where(or_(*(func.lower(column).like(like, escape="\\") for column in (
            Credential.name, Credential.application, Credential.id, Credential.token_prefix))))
    count = (await session.execute(select(func.count()).select_from(query.subquery())))
    rows = await session.execute(query.order_by(Credential.created_at, Credential.id)
                                 .offset(offset).limit(limit))
    return list(rows.scalars()), int(count.scalar_one())


async def update_fields(session: AsyncSession, credential_id: str, **values: Any) -> Credential:
    """Change a live credential; the WHERE clause keeps a concurrent delete from being undone."""
    done = await session.execute(
        update(Credential).where(Credential.id == _known_shape(credential_id),
                                 Credential.deleted_at.is_(None)).values(**values),
        execution_options=_NO_SYNC)
    if not done.rowcount:  # type: ignore[attr-defined]
        raise _missing(credential_id)
    await session.execute(BUMP_REVISION)
    return await refreshed(session, credential_id)


async def refreshed(session: AsyncSession, credential_id: str) -> Credential:
    cred = await get(session, credential_id, include_deleted=True)
    await session.refresh(cred)
    return cred


async def top_up(session: AsyncSession, credential_id: str, credits: Any) -> Credential:
    """One conditional UPDATE adds the credits unless the credential is gone or the new
    balance would pass ``MAX_CREDITS``, so two concurrent top-ups cannot overshoot it."""
    amount = parse_credits(credits)
    if amount <= 0:
        raise BadRequest("credits to top up must be positive")
    _known_shape(credential_id)
    conn = await session.connection()
    after = await conn.run_sync(lambda c: billing.top_up(c, credential_id, amount))
    if after is None:
        cred = await get(session, credential_id)
        raise BadRequest(f"credits: the balance ({format_credits(cred.balance)}) plus this "
                         f"top-up would exceed the maximum of {MAX_CREDITS:,} credits")
    await session.execute(BUMP_REVISION)
    return await refreshed(session, credential_id)


async def remove(session: AsyncSession, credential_id: str) -> None:
    """A soft delete: the token stops working everywhere, the ledger and tasks stay.

    ``disabled`` is set too, so a node still running code from before soft deletes
    refuses the token during a rolling upgrade."""
    done = await session.execute(
        update(Credential).where(Credential.id == _known_shape(credential_id),
                                 Credential.deleted_at.is_(None))
        .values(deleted_at=time.time(), disabled=True), execution_options=_NO_SYNC)
    if not done.rowcount:  # type: ignore[attr-defined]
        raise _missing(credential_id)
    await session.execute(BUMP_REVISION)


async def usage(session: AsyncSession, credential_id: str, recent: int = 10) -> dict[str, Any]:
    """Works for deleted credentials too: their ledger is what an audit looks at."""
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

"""Who may act as the admin: the admin key, and console sessions opened with it.

Wrong keys are counted per client address; past ``admin_login_limit`` that address is
refused (429) without the key being compared at all, so the key cannot be guessed at
network speed through the JSON API or the console's sign-in form. A console session is a
random cookie whose hash is kept in the database (so every node knows it and sign-out
ends it everywhere) next to the CSRF token its forms must carry.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from functools import cache

import structlog
from limits import RateLimitItem, parse
from sqlalchemy import delete, insert

from imagegate.core.accounts.ratelimit import RateLimiter
from imagegate.core.errors import InvalidToken, TooManyRequests
from imagegate.db.engine import Sessions
from imagegate.db.models import AdminSession

log = structlog.get_logger("imagegate.admin")
FAILURES = "admin-key-failures"
SESSION_SECONDS = 12 * 3600
MAX_COOKIE = 128


@cache
def _item(limit: str) -> RateLimitItem:
    return parse(limit)


async def check_key(limiter: RateLimiter, key: str, limit: str, given: str | None,
                    address: str) -> None:
    """Pass when ``given`` is the admin key; raise 429 while ``address`` is locked out,
    401 for a wrong or missing key (counted)."""
    item = _item(limit)
    wait = await limiter.blocked(FAILURES, address, item)
    if wait is not None:
        raise TooManyRequests(
            f"too many wrong admin keys from this address; retry after {wait}s",
            headers={"Retry-After": str(wait)})
    if given and hmac.compare_digest(given.encode(), key.encode()):
        return
    log.warning("admin_key_refused", address=address, given=bool(given))
    with contextlib.suppress(TooManyRequests):  # only a race gets here: the next one is 429
        await limiter.hit_item(FAILURES, address, item, limit)
    raise InvalidToken("missing or wrong admin key")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _key_check(admin_key: str, session_id: str) -> str:
    return hmac.new(admin_key.encode(), session_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    csrf_token: str
    expires_at: float


async def open_session(sessions: Sessions, admin_key: str, address: str
                       ) -> tuple[str, ConsoleSession]:
    """A new session: the cookie value (never stored) and what the server keeps."""
    cookie = secrets.token_urlsafe(32)
    now = time.time()
    found = ConsoleSession(id=_digest(cookie), csrf_token=secrets.token_urlsafe(32),
                           expires_at=now + SESSION_SECONDS)
    async with sessions.begin() as session:
        await session.execute(delete(AdminSession).where(AdminSession.expires_at < now))
        await session.execute(insert(AdminSession).values(
            id=found.id, csrf_token=found.csrf_token, key_check=_key_check(admin_key, found.id),
            address=address[:64], created_at=now, expires_at=found.expires_at))
    log.info("admin_signed_in", address=address)
    return cookie, found


async def find_session(sessions: Sessions, admin_key: str, cookie: str | None
                       ) -> ConsoleSession | None:
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    async with sessions() as session:
        row = await session.get(AdminSession, _digest(cookie))
    if row is None or row.expires_at < time.time():
        return None
    if not hmac.compare_digest(row.key_check, _key_check(admin_key, row.id)):
        return None  # opened with a key that has since been changed
    return ConsoleSession(id=row.id, csrf_token=row.csrf_token, expires_at=row.expires_at)


async def close_session(sessions: Sessions, session_id: str) -> None:
    async with sessions.begin() as session:
        await session.execute(delete(AdminSession).where(AdminSession.id == session_id))

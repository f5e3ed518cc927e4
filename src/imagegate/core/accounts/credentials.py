"""Credentials: random bearer tokens, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from imagegate.core.accounts.money import MAX_CREDITS, MAX_MICRO
from imagegate.core.errors import (
    BadRequest,
    Disabled,
    InvalidToken,
    TokenExpired,
    TokenMismatched,
)
from imagegate.db.models import Credential, LedgerEntry, Revision

TOKEN_PREFIX = "ig-"
DEFAULT_SCOPES = ["openai-images"]
KNOWN_SCOPES = ("openai-images",)  # generations, edits and tasks

# Bumped with every credential change, read by each node's cache about once a second.
BUMP_REVISION = (update(Revision).where(Revision.name == "credentials")
                 .values(value=Revision.value + 1))
READ_REVISION = select(Revision.value).where(Revision.name == "credentials")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(24)  # 24 bytes -> 32 url-safe characters


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_token(token: str) -> bool:
    return 8 <= len(token) <= 256 and token.isascii() and token.isprintable() and " " not in token


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    credential: Credential
    token: str  # shown once, never stored


async def create_credential(session: AsyncSession, *, name: str, credits_micro: int = 0,
                            application: str = "default", scopes: list[str] | None = None,
                            expires_at: float | None = None, token: str | None = None
                            ) -> IssuedCredential:
    if not 0 <= credits_micro <= MAX_MICRO:
        raise BadRequest(f"starting credits must be from 0 to {MAX_CREDITS:,}")
    token = token or new_token()
    now = time.time()
    cred = Credential(
        id=str(uuid.uuid4()), name=name, application=application, token_hash=hash_token(token),
        token_prefix=token[:8], scopes=list(scopes or DEFAULT_SCOPES), balance=credits_micro,
        expires_at=expires_at, disabled=False, webhook_secret="whsec_" + secrets.token_urlsafe(24),
        created_at=now,
    )
    session.add(cred)
    await session.flush()
    if credits_micro:
        session.add(LedgerEntry(credential_id=cred.id, task_id=None, kind="grant",
                                amount=credits_micro, balance_after=credits_micro, created_at=now))
    await session.execute(BUMP_REVISION)
    return IssuedCredential(cred, token)


def parse_bearer(header: str | None) -> str:
    if not header:
        raise InvalidToken("missing authorization header; send 'authorization: Bearer <token>'")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or not looks_like_token(token):
        raise InvalidToken("malformed authorization header; expected 'Bearer <token>'")
    return token


async def authenticate(session: AsyncSession, header: str | None, scope: str) -> Credential:
    token = parse_bearer(header)
    digest = hash_token(token)
    cred = (await session.execute(
        select(Credential).where(Credential.token_hash == digest)
    )).scalar_one_or_none()
    if cred is None or not hmac.compare_digest(cred.token_hash, digest):
        raise InvalidToken("invalid token")
    check_usable(cred, scope)
    return cred


def check_usable(cred: Credential, scope: str, now: float | None = None) -> None:
    if cred.deleted_at is not None:
        raise InvalidToken("invalid token")  # as if it had never existed
    if cred.disabled:
        raise Disabled("this credential is disabled")
    if cred.expires_at is not None and cred.expires_at <= (now or time.time()):
        raise TokenExpired("this credential has expired")
    if scope not in cred.scopes:
        raise TokenMismatched(
            f"this token is not issued for the {scope} API (its scopes: {', '.join(cred.scopes)})"
        )


async def touch(session: AsyncSession, credential_id: str) -> None:
    await session.execute(
        update(Credential).where(Credential.id == credential_id).values(last_used_at=time.time())
    )

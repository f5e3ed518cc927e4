"""Database tables. Money is stored as integer micro-credits so sums stay exact in any database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MICRO = 1_000_000  # micro-credits per credit


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Credential(Base):
    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    application: Mapped[str] = mapped_column(String(200), default="default")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)  # micro-credits
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_limits: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    webhook_secret: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[float] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # set instead of deleting the row, so its ledger and tasks stay (the ledger is append-only)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(32), default="images_generations")
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(8), default="sync")  # sync | async
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    credits: Mapped[int] = mapped_column(BigInteger, default=0)  # micro-credits reserved/charged
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    upstream: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    callback: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    callback_next_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_tasks_credential_created", "credential_id", "created_at"),
        Index("ix_tasks_trace", "credential_id", "trace_id"),
        Index("ix_tasks_status_lease", "status", "lease_until"),
        Index("ix_tasks_credential_status", "credential_id", "status"),
        Index("ix_tasks_callback_next", "callback_next_at"),
        Index("ix_tasks_idempotency", "credential_id", "idempotency_key", unique=True),
    )


class LedgerEntry(Base):
    """Append-only: every movement of credits. A credential's balance is the sum of its rows."""

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"),
                                               index=True)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # grant | topup | reserve | release | settle
    amount: Mapped[int] = mapped_column(BigInteger)  # micro-credits, signed
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)


class Revision(Base):
    """Counters bumped in the same transaction as a change, so other processes notice it
    with one tiny read (row ``credentials``: any change to any credential)."""

    __tablename__ = "revisions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AdminSession(Base):
    """A signed-in admin console. The cookie holds a random value; only its hash is kept,
    with the CSRF token its forms carry. Deleted on sign-out; useless once the admin key
    changes, since ``key_check`` is an HMAC of the session under the key."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie
    csrf_token: Mapped[str] = mapped_column(String(64))
    key_check: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)

"""Engine construction and schema migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import SingletonThreadPool

T = TypeVar("T")
MIGRATION_LOCK = 0x1D6A7E  # advisory lock id so several nodes can start at once on PostgreSQL
CHECKPOINT_EVERY = 500  # SQLite: inline write transactions between WAL checkpoints


def normalize_url(url: str) -> str:
    """Accept the usual spellings and pick the async driver."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    return url


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20,
                writer: bool = False) -> AsyncEngine:
    """``writer``: SQLite only, one connection whose transactions take the write lock at
    BEGIN, so writers queue in asyncio rather than sleep in SQLite's busy handler."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        options: dict[str, Any] = {"connect_args": {"timeout": 30}}
        if writer:
            options.update(pool_size=1, max_overflow=0, pool_timeout=3600)
        engine = create_async_engine(url, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            if writer:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves

        if writer:
            @event.listens_for(engine.sync_engine, "begin")
            def _begin_immediate(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow,
                               pool_pre_ping=True)


class Sessions:
    """``sessions()`` for reads, ``sessions.begin()`` for a write transaction.

    On PostgreSQL both share one pool. On SQLite, writes go through a dedicated single
    connection: one writer at a time is all SQLite allows anyway, and waiting for it in
    asyncio is far cheaper than contending in the busy handler."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        sqlite = self.engine.dialect.name == "sqlite"
        self.write_engine = make_engine(url, writer=True) if sqlite else self.engine
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)
        # SQLite: hot write transactions run on plain sqlite3 connections, first inline on
        # the event loop (a commit in WAL mode without fsync takes microseconds, a thread
        # hop ten times that), or in a thread when another process holds the write lock;
        # a lock keeps this process's writers from meeting in SQLite's busy handler
        self._lock: asyncio.Lock | None = asyncio.Lock() if sqlite else None
        self._sync_engine = _sync_sqlite_writer(self.write_engine.url) if sqlite else None
        self._inline_engine = (_sync_sqlite_writer(self.write_engine.url, inline=True)
                               if sqlite else None)
        self._inline: Connection | None = None  # opened on first use, kept for good
        self._thread = ThreadPoolExecutor(1, "imagegate-sqlite") if sqlite else None
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future[None] | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __call__(self) -> AsyncSession:
        return self._read()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        if self._lock is None:
            async with self._write.begin() as session:
                yield session
            return
        async with self._lock, self._write.begin() as session:
            yield session

    async def write(self, work: Callable[[Connection], T], *, small: bool = True) -> T:
        """Run ``work`` in one write transaction on a synchronous Core connection (the ORM
        session costs more than the statements on this path). On SQLite a ``small`` one
        runs inline; a large one in the writer thread, so the event loop never stalls."""
        if self._sync_engine is None:
            async with self.write_engine.begin() as conn:
                return await conn.run_sync(work)
        assert self._lock is not None
        async with self._lock:
            done, result = self._write_inline(work) if small else (False, None)
            if not done:  # large, or another process holds the lock: off the loop
                result = await asyncio.get_running_loop().run_in_executor(
                    self._thread, self._write_in_thread, work)
        self._after_commit()
        return result

    def _write_inline(self, work: Callable[[Connection], T]) -> tuple[bool, T | None]:
        """(False, None) when the write lock is taken, before ``work`` has run at all."""
        if self._inline is None:
            assert self._inline_engine is not None
            self._inline = self._inline_engine.connect()
        conn = self._inline
        try:
            transaction = conn.begin()  # BEGIN IMMEDIATE, which fails at once if busy
        except OperationalError as e:
            conn.rollback()
            if "locked" in str(e.orig) or "busy" in str(e.orig):
                return False, None
            raise
        with transaction:
            return True, work(conn)

    def _write_in_thread(self, work: Callable[[Connection], T]) -> T:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as conn:
            return work(conn)

    def _after_commit(self) -> None:
        """Inline commits never checkpoint (that may fsync); every so many, a thread does."""
        self._since_checkpoint += 1
        if self._since_checkpoint < CHECKPOINT_EVERY or (
                self._checkpoint is not None and not self._checkpoint.done()):
            return
        self._since_checkpoint = 0
        self._checkpoint = asyncio.ensure_future(self._checkpoint_now())

    async def _checkpoint_now(self) -> None:
        # Writers wait (in asyncio) meanwhile: a checkpoint racing new commits never
        # completes, and the log would only grow.
        assert self._lock is not None
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(
                self._thread, self._checkpoint_in_thread)

    def _checkpoint_in_thread(self) -> None:
        assert self._sync_engine is not None
        try:
            raw = self._sync_engine.raw_connection()  # no transaction around the pragma
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                raw.close()
        except Exception:  # noqa: BLE001 - a later checkpoint (or any reader's) catches up
            pass

    async def upgrade(self) -> None:
        await upgrade(self.write_engine)

    async def ping(self) -> None:
        """Raises when the database cannot be reached."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
        if self._sync_engine is not None and self._thread is not None:
            if self._checkpoint is not None:
                await self._checkpoint
            await asyncio.get_running_loop().run_in_executor(self._thread,
                                                             self._sync_engine.dispose)
            self._thread.shutdown(wait=False)
        if self._inline is not None:
            self._inline.close()
        if self._inline_engine is not None:
            self._inline_engine.dispose()


def _sync_sqlite_writer(url: URL, *, inline: bool = False) -> Engine:
    """A pysqlite engine on the same file: one connection, BEGIN IMMEDIATE, WAL.

    ``inline``: for the event loop's own thread, so it must never wait: no busy timeout,
    and no automatic checkpoints (see ``Sessions._after_commit``)."""
    engine = create_engine(url.set(drivername="sqlite"), poolclass=SingletonThreadPool,
                           connect_args={"timeout": 0 if inline else 30})
    pragmas = ["journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
               "busy_timeout=0" if inline else "busy_timeout=30000"]
    if inline:
        pragmas.append("wal_autocheckpoint=0")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        for pragma in pragmas:
            dbapi_conn.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        # on the driver: through SQLAlchemy's execution path this statement cost more than
        # the transaction's own statements (db/hot.py); its errors still arrive as SQLAlchemy's
        try:
            conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise DBAPIError.instance("BEGIN IMMEDIATE", None, e, sqlite3.Error) from e

    return engine


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(resources.files("imagegate.db").joinpath("migrations"))
    )
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
    command.upgrade(_alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the latest revision; safe to call from several nodes at once."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)

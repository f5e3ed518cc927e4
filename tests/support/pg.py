"""Fresh PostgreSQL databases for tests, on the server the machine runs at 127.0.0.1:5432."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import asyncpg
import pytest

ADMIN_DSN = os.environ.get("IMAGEGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _admin(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # a thread of its own: the caller may be inside a running loop (Playwright's sync API)
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, run()).result()


def available() -> bool:
    try:
        _admin("SELECT 1")
        return True
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database; yields its SQLAlchemy URL and drops it afterwards."""
    if not available():
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL is not reachable at {ADMIN_DSN}")
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    name = f"ig_test_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

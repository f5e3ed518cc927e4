"""Direct looks into a gateway's database, for assertions the API does not expose.

``target`` is a data directory (its SQLite file) or a SQLAlchemy URL; SQL uses ``?``
placeholders either way."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import backend


def _url(target: Path | str | Any) -> str:
    if isinstance(target, Path):
        return backend.lookup(target) or f"sqlite+aiosqlite:///{target / 'imagegate.db'}"
    if hasattr(target, "data_dir"):
        return _url(target.data_dir)
    return str(target)


def _named(sql: str, args: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    names = iter(range(len(args)))
    return re.sub(r"\?", lambda _: f":p{next(names)}", sql), {f"p{i}": a for i, a in
                                                              enumerate(args)}


def _run(url: str, sql: str, args: tuple[Any, ...], fetch: bool) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                stmt, params = _named(sql, args)
                result = await conn.execute(text(stmt), params)
                return [tuple(r) for r in result.fetchall()] if fetch else []
        finally:
            await engine.dispose()

    return asyncio.run(go())


def query(target: Path | str | Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return _run(_url(target), sql, args, fetch=True)


def query_url(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return _run(url, sql, args, fetch=True)


def execute(target: Path | str | Any, sql: str, *args: Any) -> None:
    _run(_url(target), sql, args, fetch=False)

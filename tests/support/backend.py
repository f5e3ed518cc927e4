"""Which database the API tests run on. The `backend` fixture (conftest) sets it; every
gateway started while it is "postgresql" gets a fresh PostgreSQL database of its own, kept
for its data directory so a restarted gateway finds its data again."""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.support import pg

current = "sqlite"
_databases: dict[Path, str] = {}
_cleanup = contextlib.ExitStack()


def database_url_for(data_dir: Path) -> str | None:
    key = data_dir.resolve()
    if key in _databases:
        return _databases[key]
    if current != "postgresql":
        return None
    url = _cleanup.enter_context(pg.fresh_database())
    _databases[key] = url
    return url


def lookup(data_dir: Path) -> str | None:
    return _databases.get(data_dir.resolve())


def drop_all() -> None:
    _databases.clear()
    _cleanup.close()

"""Direct looks into a gateway's SQLite database, for assertions the API does not expose."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def query(data_dir: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / "imagegate.db") as conn:
        return conn.execute(sql, args).fetchall()


def execute(data_dir: Path, sql: str, *args: Any) -> None:
    with sqlite3.connect(data_dir / "imagegate.db") as conn:
        conn.execute(sql, args)
        conn.commit()


def token_prefix(token: str) -> str:
    return token[:8]

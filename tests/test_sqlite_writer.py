"""SQLite writes run inline on the event loop: they must never make it wait, neither for
another process's write lock nor for a WAL checkpoint."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from imagegate.db.engine import CHECKPOINT_EVERY, Sessions
from tests.support.server import GatewayServer


def test_another_process_holding_the_write_lock_does_not_stall_the_gateway(
        tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox") as gw:
        token = gw.demo_token()
        holder = sqlite3.connect(gw.data_dir / "imagegate.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # like `imagegate tokens topup` mid-transaction
        answer: dict[str, httpx.Response] = {}

        def generate() -> None:
            answer["r"] = httpx.post(gw.url + "/v1/images/generations", timeout=30,
                                     headers={"authorization": f"Bearer {token}"},
                                     json={"model": "nano-banana", "prompt": "x"})

        client = threading.Thread(target=generate)
        client.start()
        time.sleep(0.5)
        assert "r" not in answer  # it waits for the lock...
        health = httpx.get(gw.url + "/healthz", timeout=5)  # ...but not on the event loop
        assert health.status_code == 200
        holder.execute("COMMIT")
        holder.close()
        client.join(30)
        assert answer["r"].status_code == 200, answer["r"].text


def test_inline_writes_are_checkpointed_off_the_loop(tmp_path: Path) -> None:
    async def main() -> int:
        sessions = Sessions(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        await sessions.upgrade()

        def setup(conn: object) -> None:
            conn.execute(text("CREATE TABLE blobs (b BLOB)"))  # type: ignore[attr-defined]

        await sessions.write(setup)
        for _ in range(CHECKPOINT_EVERY * 6):
            await sessions.write(lambda conn: conn.execute(
                text("INSERT INTO blobs VALUES (randomblob(2000))")))
            await asyncio.sleep(0)  # a server's loop turns between requests
        await asyncio.sleep(0.5)  # the last checkpoint, in its thread
        size = (tmp_path / "x.db-wal").stat().st_size
        await sessions.dispose()
        return size

    wal = asyncio.run(main())
    # without checkpoints the log would hold every page written (~6 x 500 x 4 KiB = 12 MiB)
    assert wal < 8 * 1024 * 1024, wal

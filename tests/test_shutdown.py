"""SIGTERM: one grace period for everything, an answer for every waiting client, and no
charge for work that was stopped."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import db
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
GRACE = 5.0


def _wait_for(gw: GatewayServer, running: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = db.query(gw.data_dir, "SELECT count(*) FROM tasks WHERE status = 'running'")
        if rows[0][0] >= running:
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {running} running tasks")


def test_sigterm_answers_sync_clients_and_hands_back_async_tasks(tmp_path: Path) -> None:
    env = {"IMAGEGATE_SANDBOX_LATENCY": "60", "IMAGEGATE_SHUTDOWN_GRACE": str(GRACE),
           "IMAGEGATE_WORKERS": "2", "IMAGEGATE_POLL_INTERVAL": "0.2"}
    gw = GatewayServer(tmp_path / "d", "--sandbox", env=env).start()
    token = gw.token(credits=10)
    auth = {"authorization": f"Bearer {token}"}
    async_ids = []
    for i in range(2):
        r = httpx.post(gw.url + "/v1/images/generations", headers=auth, timeout=30,
                       json={"model": "nano-banana", "prompt": f"async {i}", "async": True})
        async_ids.append(r.json()["task_id"])
    _wait_for(gw, 2)
    answer: dict[str, httpx.Response] = {}

    def sync_request() -> None:
        answer["r"] = httpx.post(gw.url + "/v1/images/generations", headers=auth, timeout=60,
                                 json={"model": "nano-banana", "prompt": "sync"})

    client = threading.Thread(target=sync_request)
    client.start()
    _wait_for(gw, 3)
    assert gw.proc is not None
    started = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    gw.proc.wait(30)
    took = time.monotonic() - started
    client.join(30)

    r = answer["r"]
    assert r.status_code == 500 and r.headers["content-type"] == "application/json", r.text
    error = r.json()["error"]
    assert error["code"] == "api_error" and "shutting down" in error["message"]
    assert "nothing was charged" in error["message"]
    assert took < GRACE + 4, f"stopping took {took:.1f}s with a {GRACE:g}s grace period"

    tasks = dict(db.query(gw.data_dir, "SELECT id, status FROM tasks"))
    (sync_id,) = set(tasks) - set(async_ids)
    assert tasks[sync_id] == "failed"
    assert [tasks[i] for i in async_ids] == ["queued", "queued"]  # handed back
    kinds = [k for (k,) in db.query(gw.data_dir, "SELECT kind FROM ledger WHERE task_id = ? "
                                    "ORDER BY id", sync_id)]
    assert kinds == ["reserve", "release"]

    # the next node runs the handed-back tasks, each charged once
    again = GatewayServer(tmp_path / "d", "--sandbox",
                          env={**env, "IMAGEGATE_SANDBOX_LATENCY": "0"}, port=gw.port).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = db.query(gw.data_dir, "SELECT count(*) FROM tasks WHERE status = "
                            "'succeeded'")[0][0]
            if done == 2:
                break
            time.sleep(0.1)
        settles = db.query(gw.data_dir, "SELECT task_id FROM ledger WHERE kind = 'settle'")
        assert sorted(t for (t,) in settles) == sorted(async_ids)
    finally:
        again.stop()


def test_kill_9_fails_sync_requests_nobody_can_collect(tmp_path: Path) -> None:
    """A sync task whose node died is refunded, unless an Idempotency-Key lets its client
    come back for it: then another runner finishes it and the replay gets the image."""
    env = {"IMAGEGATE_SANDBOX_LATENCY": "60", "IMAGEGATE_LEASE_SECONDS": "2",
           "IMAGEGATE_POLL_INTERVAL": "0.2"}
    gw = GatewayServer(tmp_path / "d", "--sandbox", env=env).start()
    token = gw.token(credits=10)
    auth = {"authorization": f"Bearer {token}"}
    body = {"model": "nano-banana", "prompt": "sync"}

    def send(headers: dict[str, str]) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the node dies under it
            httpx.post(gw.url + "/v1/images/generations", headers={**auth, **headers},
                       json=body, timeout=30)

    clients = [threading.Thread(target=send, args=(headers,))
               for headers in ({}, {"idempotency-key": "k1"})]
    for c in clients:
        c.start()
    _wait_for(gw, 2)
    gw.kill()
    for c in clients:
        c.join(30)
    again = GatewayServer(tmp_path / "d", "--sandbox",
                          env={**env, "IMAGEGATE_SANDBOX_LATENCY": "0"}, port=gw.port).start()
    try:
        replay = httpx.post(again.url + "/v1/images/generations", json=body, timeout=60,
                            headers={**auth, "idempotency-key": "k1"})
        assert replay.status_code == 200, replay.text
        rows = db.query(gw.data_dir, "SELECT idempotency_key, status, error_message FROM tasks")
        by_key = {key: (status, message) for key, status, message in rows}
        assert by_key["k1"][0] == "succeeded"
        assert by_key[None][0] == "failed" and "nothing was charged" in by_key[None][1]
        balance = db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = 'test'")
        assert balance[0][0] == 10_000_000 - 140_000  # only the collected image was paid for
    finally:
        again.stop()

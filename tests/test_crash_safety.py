"""No accepted task is lost: kill -9 mid-flight, and several workers on one database."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import db
from tests.support.receiver import CallbackReceiver
from tests.support.server import GatewayServer, free_port

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

GEN = "/openai/images/generations"
FAST = {"IMAGEGATE_CALLBACK_ALLOW": '["127.0.0.0/8"]', "IMAGEGATE_CALLBACK_BASE_DELAY": "0.2",
        "IMAGEGATE_POLL_INTERVAL": "0.2", "IMAGEGATE_LEASE_SECONDS": "2"}


def wait_until(check, timeout: float = 60, every: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError("condition not met in time")


def submit(server: GatewayServer, token: str, n: int, callback: str | None) -> list[str]:
    ids = []
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}) as c:
        for i in range(n):
            payload: dict[str, object] = {"model": "nano-banana", "prompt": f"task {i}",
                                          "async": True}
            if callback:
                payload["callback_url"] = callback
            r = c.post(GEN, json=payload)
            assert r.status_code == 200, r.text
            ids.append(r.json()["task_id"])
    return ids


def statuses(data: Path) -> Counter[str]:
    return Counter(s for (s,) in db.query(data, "SELECT status FROM tasks"))


def test_kill_9_mid_flight_loses_nothing(tmp_path: Path) -> None:
    """kill -9 while 20 async tasks are running; after a restart each one finishes with
    exactly one charge and exactly one successful callback."""
    data = tmp_path / "d"
    env = {**FAST, "IMAGEGATE_SANDBOX_LATENCY": "8", "IMAGEGATE_WORKERS": "20",
           "IMAGEGATE_DEFAULT_CONCURRENCY": "20"}
    with CallbackReceiver() as receiver:
        server = GatewayServer(data, "--sandbox", env=env).start()
        token = server.token(credits=100)
        ids = submit(server, token, 20, receiver.url)
        wait_until(lambda: statuses(data)["running"] == 20)
        server.kill()
        assert statuses(data) == Counter(running=20)

        again = GatewayServer(data, "--sandbox", env=env, port=server.port).start()
        try:
            wait_until(lambda: statuses(data)["succeeded"] == 20, timeout=120)
            receiver.wait_for(20, timeout=60)
            time.sleep(1)  # room for a duplicate delivery to show itself
        finally:
            again.stop()

    delivered = Counter(r.json["task_id"] for r in receiver.delivered())
    assert set(delivered) == set(ids)
    assert set(delivered.values()) == {1}
    assert all(r.json["success"] for r in receiver.delivered())
    assert len(receiver.received) == 20  # and nothing besides them

    (cred_id, balance), = db.query(data, "SELECT id, balance FROM credentials WHERE name='test'")
    assert balance == 100_000_000 - 20 * 140_000
    ledger = db.query(data, "SELECT task_id, kind, amount FROM ledger WHERE credential_id = ? "
                            "ORDER BY id", cred_id)
    assert sum(amount for _, _, amount in ledger) == balance
    per_task: dict[str, list[str]] = {}
    for task_id, kind, _ in ledger:
        if task_id:
            per_task.setdefault(task_id, []).append(kind)
    assert per_task == {i: ["reserve", "settle"] for i in ids}
    # every task was running when the node died, so each ran exactly once more
    assert db.query(data, "SELECT min(attempts), max(attempts) FROM tasks") == [(2, 2)]


def callback_state(data: Path) -> dict[str, Any]:
    ((raw,),) = db.query(data, "SELECT callback FROM tasks")
    state = json.loads(raw) if isinstance(raw, str) else raw
    return state or {"attempts": []}  # type: ignore[no-any-return]


def test_callback_retries_survive_a_restart(tmp_path: Path) -> None:
    """Receiver down, node killed between attempts, node back, receiver up: delivered
    once, and the attempts made before the kill are still on record."""
    data = tmp_path / "d"
    port = free_port()
    env = {**FAST, "IMAGEGATE_CALLBACK_MAX_DELAY": "1", "IMAGEGATE_CALLBACK_TIMEOUT": "2"}
    server = GatewayServer(data, "--sandbox", env=env).start()
    token = server.token(credits=10)
    (task_id,) = submit(server, token, 1, f"http://127.0.0.1:{port}/hook")
    wait_until(lambda: len(callback_state(data)["attempts"]) >= 2, timeout=30)
    server.kill()
    before = callback_state(data)["attempts"]
    assert before and all(a["error"].startswith("ConnectError") for a in before)

    again = GatewayServer(data, "--sandbox", env=env, port=server.port).start()
    try:
        with CallbackReceiver(port=port) as receiver:
            receiver.wait_for(1, timeout=60)
            wait_until(lambda: callback_state(data).get("state") == "delivered", timeout=30)
            time.sleep(1)  # room for a duplicate delivery to show itself
    finally:
        again.stop()
    attempts = callback_state(data)["attempts"]
    assert attempts[:len(before)] == before
    assert [a["status"] for a in attempts] == [None] * (len(attempts) - 1) + [200]
    assert len(receiver.received) == 1 and receiver.received[0].json["task_id"] == task_id


def test_tasks_out_of_attempts_fail_and_refund(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**FAST, "IMAGEGATE_SANDBOX_LATENCY": "30", "IMAGEGATE_MAX_ATTEMPTS": "1",
           "IMAGEGATE_WORKERS": "2"}
    server = GatewayServer(data, "--sandbox", env=env).start()
    token = server.token(credits=10)
    (task_id,) = submit(server, token, 1, None)
    wait_until(lambda: statuses(data)["running"] == 1)
    server.kill()
    again = GatewayServer(data, "--sandbox", env=env, port=server.port).start()
    try:
        wait_until(lambda: statuses(data)["failed"] == 1, timeout=30)
    finally:
        again.stop()
    (code, message), = db.query(data, "SELECT error_code, error_message FROM tasks")
    assert code == "api_error" and "1 attempts" in message
    assert db.query(data, "SELECT balance FROM credentials WHERE name='test'") == [(10_000_000,)]
    kinds = [k for (k,) in db.query(data, "SELECT kind FROM ledger WHERE task_id = ? ORDER BY id",
                                    task_id)]
    assert kinds == ["reserve", "release"]


def test_two_worker_processes_never_share_a_task(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**FAST, "IMAGEGATE_WORKERS": "0", "IMAGEGATE_SANDBOX_LATENCY": "0.05"}
    server = GatewayServer(data, "--sandbox", env=env).start()
    workers = []
    try:
        token = server.token(credits=100)
        logs = [data / f"worker-{i}.log" for i in range(2)]
        for log in logs:
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "imagegate", "worker", "--sandbox", "--data-dir",
                 str(data), "--concurrency", "4", "--public-base-url", server.url],
                stdout=subprocess.DEVNULL, stderr=log.open("w"),
                env={**os.environ, **server.env, "IMAGEGATE_LOG_JSON": "true"}))
        ids = submit(server, token, 60, None)
        wait_until(lambda: statuses(data)["succeeded"] == 60, timeout=60)
    finally:
        for w in workers:
            w.terminate()
            w.wait(15)
        server.stop()
    claims: Counter[str] = Counter()
    per_worker = []
    for log in logs:
        mine = [json.loads(line)["task_id"] for line in log.read_text().splitlines()
                if '"task_claimed"' in line]
        per_worker.append(len(mine))
        claims.update(mine)
    assert set(claims) == set(ids)
    assert set(claims.values()) == {1}
    assert all(count > 0 for count in per_worker), per_worker
    assert db.query(data, "SELECT max(attempts) FROM tasks") == [(1,)]


def test_an_edit_given_up_by_recovery_leaves_no_inputs(tmp_path: Path) -> None:
    """A sync edit whose node died cannot be answered: recovery fails it, and the inputs
    stored for its run are deleted with it (no Job ever ends it)."""
    from tests.support.edits import RED, data_uri, picture

    data = tmp_path / "d"
    env = {**FAST, "IMAGEGATE_SANDBOX_LATENCY": "30", "IMAGEGATE_WORKERS": "2"}
    server = GatewayServer(data, "--sandbox", env=env).start()
    token = server.token(credits=10)
    body = {"model": "gpt-image-2", "prompt": "lost", "image": data_uri(picture(RED))}

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the node dies under it
            httpx.post(server.url + "/openai/images/edits", json=body, timeout=60,
                       headers={"authorization": f"Bearer {token}"})

    threading.Thread(target=send, daemon=True).start()
    wait_until(lambda: statuses(data)["running"] == 1)
    inputs = data / "files" / "inputs"
    assert len(list(inputs.iterdir())) == 1
    server.kill()
    again = GatewayServer(data, "--sandbox", env=env, port=server.port).start()
    try:
        wait_until(lambda: statuses(data)["failed"] == 1, timeout=30)
        wait_until(lambda: not list(inputs.iterdir()), timeout=10)
    finally:
        again.stop()
    (message,) = db.query(data, "SELECT error_message FROM tasks")[0]
    assert "stopped" in message

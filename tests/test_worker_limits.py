"""Workers honour each credential's own concurrency limit, not only the default."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support import db
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
ADMIN = "admin-key-for-worker-limits"


def test_a_credential_runs_no_more_than_its_own_limit(tmp_path: Path) -> None:
    env = {"IMAGEGATE_ADMIN_KEY": ADMIN, "IMAGEGATE_SANDBOX_LATENCY": "1.0",
           "IMAGEGATE_WORKERS": "6", "IMAGEGATE_POLL_INTERVAL": "0.2"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as gw:
        admin = {"authorization": f"Bearer {ADMIN}"}
        made = {}
        for name, limits in (("one-at-a-time", {"concurrency": 1}), ("default", None)):
            r = httpx.post(gw.url + "/admin/credentials", headers=admin, json={
                "name": name, "credits": 100, "rate_limits": limits})
            assert r.status_code in (200, 201), r.text
            made[name] = r.json()
        ids: dict[str, list[str]] = {name: [] for name in made}
        for name, cred in made.items():
            for _ in range(3):
                r = httpx.post(gw.url + "/v1/images/generations", timeout=30,
                               headers={"authorization": f"Bearer {cred['token']}"},
                               json={"model": "nano-banana", "prompt": name, "async": True})
                assert r.status_code == 200, r.text
                ids[name].append(r.json()["task_id"])
        most = {name: 0 for name in made}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = db.query(gw.data_dir, "SELECT credential_id, status FROM tasks")
            for name, cred in made.items():
                running = sum(1 for c, s in rows if c == cred["id"] and s == "running")
                most[name] = max(most[name], running)
            if all(s == "succeeded" for _, s in rows) and len(rows) == 6:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"tasks did not finish: {rows}")
    assert most["one-at-a-time"] == 1
    assert most["default"] >= 2  # the others were free to run side by side

"""IMAGEGATE_SLOT_WAIT: synchronous requests over a credential's concurrency limit wait for a
slot instead of a 429, and the limit stays exact across processes while they wait."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support import db
from tests.support.server import GatewayServer
from tests.test_ratelimit import ADMIN, GEN, burst, check_429, make_credential

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
BODY = {"model": "nano-banana", "prompt": "a queue of apples"}


def most_running(data: Path, stop: threading.Event) -> list[int]:
    """The most tasks the database held running at once, read every 10 ms until ``stop``
    (the state the limit is enforced on; timestamps taken before a commit can overlap)."""
    peak = [0]

    def watch() -> None:
        while not stop.is_set():
            (count,), = db.query(data, "SELECT count(*) FROM tasks WHERE status = 'running'")
            peak[0] = max(peak[0], count)
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()
    return peak


def test_requests_wait_for_a_slot_across_two_processes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**ADMIN, "IMAGEGATE_SANDBOX_LATENCY": "0.3", "IMAGEGATE_SLOT_WAIT": "120"}
    with GatewayServer(data, "--sandbox", env=env) as one, \
            GatewayServer(data, "--sandbox", env=env) as two:
        token = make_credential(one, concurrency=3, rps=1000)
        stop = threading.Event()
        peak = most_running(data, stop)
        responses = asyncio.run(burst([one.url, two.url], token, 12, GEN, BODY))
        stop.set()
        assert Counter(r.status_code for r in responses) == {200: 12}, [
            r.text for r in responses if r.status_code != 200]
        assert 1 <= peak[0] <= 3, peak


def test_a_wait_that_runs_out_is_a_429_that_says_so(tmp_path: Path) -> None:
    env = {**ADMIN, "IMAGEGATE_SANDBOX_LATENCY": "3", "IMAGEGATE_SLOT_WAIT": "0.2"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        token = make_credential(server, concurrency=1, rps=1000)
        responses = asyncio.run(burst([server.url], token, 3, GEN, BODY))
        assert Counter(r.status_code for r in responses) == {200: 1, 429: 2}
        refused = next(r for r in responses if r.status_code == 429)
        check_429(refused)
        assert "no slot came free within 0.2s" in refused.json()["error"]["message"]

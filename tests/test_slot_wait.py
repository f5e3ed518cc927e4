"""IMAGEGATE_SLOT_WAIT: synchronous requests over a credential's concurrency limit wait for a
slot instead of a 429, and the limit stays exact across processes while they wait."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tests.support import db
from tests.support.server import GatewayServer
from tests.test_ratelimit import ADMIN, GEN, burst, check_429, make_credential

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
BODY = {"model": "nano-banana", "prompt": "a queue of apples"}


def most_at_once(data: Path) -> int:
    """The most tasks that ran at one time, from when each was admitted and ended."""
    rows = db.query(data, "SELECT started_at, finished_at FROM tasks")
    edges = sorted([(s, 1) for s, _ in rows] + [(f, -1) for _, f in rows])
    running = peak = 0
    for _, step in edges:  # an end at the same instant as a start is counted first
        running += step
        peak = max(peak, running)
    return peak


def test_requests_wait_for_a_slot_across_two_processes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**ADMIN, "IMAGEGATE_SANDBOX_LATENCY": "0.3", "IMAGEGATE_SLOT_WAIT": "120"}
    with GatewayServer(data, "--sandbox", env=env) as one, \
            GatewayServer(data, "--sandbox", env=env) as two:
        token = make_credential(one, concurrency=3, rps=1000)
        responses = asyncio.run(burst([one.url, two.url], token, 12, GEN, BODY))
        assert Counter(r.status_code for r in responses) == {200: 12}, [
            r.text for r in responses if r.status_code != 200]
        assert most_at_once(data) <= 3


def test_a_wait_that_runs_out_is_a_429_that_says_so(tmp_path: Path) -> None:
    env = {**ADMIN, "IMAGEGATE_SANDBOX_LATENCY": "3", "IMAGEGATE_SLOT_WAIT": "0.2"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        token = make_credential(server, concurrency=1, rps=1000)
        responses = asyncio.run(burst([server.url], token, 3, GEN, BODY))
        assert Counter(r.status_code for r in responses) == {200: 1, 429: 2}
        refused = next(r for r in responses if r.status_code == 429)
        check_429(refused)
        assert "no slot came free within 0.2s" in refused.json()["error"]["message"]

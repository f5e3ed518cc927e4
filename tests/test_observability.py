"""Metrics move with traffic; logs carry trace ids and never tokens or prompts."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.support.receiver import CallbackReceiver
from tests.support.server import GatewayServer

# what these check happens above the database: SQLite only (the database layer runs on
# both in test_billing, test_crash_safety, test_hardening, test_scaleout ...)
pytestmark = [pytest.mark.usefixtures("backend"),
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

GEN = "/openai/images/generations"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_move_and_logs_carry_trace_ids(tmp_path: Path) -> None:
    env = {"IMAGEGATE_CALLBACK_ALLOW": '["127.0.0.0/8"]', "IMAGEGATE_POLL_INTERVAL": "0.2"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server, \
            CallbackReceiver() as receiver:
        token = server.token(credits=10, name="observed")
        auth = {"authorization": f"Bearer {token}"}
        before = httpx.get(server.url + "/metrics").text
        assert "imagegate_queue_depth" in before
        prompt = "a secret prompt 7f3a9c"
        r = httpx.post(server.url + GEN, json={"model": "nano-banana-2", "prompt": prompt},
                       headers=auth)
        assert r.status_code == 200
        bad = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x",
                                                 "size": "nope"}, headers=auth)
        assert bad.status_code == 400
        httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "cb",
                                           "callback_url": receiver.url}, headers=auth)
        receiver.wait_for(1)
        time.sleep(0.3)
        after = httpx.get(server.url + "/metrics").text

        route = "/openai/images/generations"
        key = {"route": route, "model": "nano-banana-2", "status": "200"}
        assert sample(after, "imagegate_requests_total", **key) == \
            sample(before, "imagegate_requests_total", **key) + 1
        assert sample(after, "imagegate_requests_total", route=route, model="nano-banana",
                      status="400") >= 1
        assert sample(after, "imagegate_credits_charged_total", model="nano-banana-2") == 0.28
        assert sample(after, "imagegate_task_duration_seconds_count", model="nano-banana-2",
                      status="succeeded") == 1
        assert sample(after, "imagegate_request_duration_seconds_count", route=route) >= 3
        assert sample(after, "imagegate_callback_deliveries_total", outcome="delivered") == 1
        assert sample(after, "imagegate_queue_depth") == 0

        time.sleep(0.2)
        log = server.log()
        lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
        mine = [x for x in lines if x.get("trace_id") == r.headers["x-trace-id"]]
        request_line = next(x for x in mine if x["event"] == "request")
        assert request_line["status"] == 200 and request_line["credential"] == "observed"
        assert request_line["task_id"] == r.json()["task_id"]
        assert request_line["model"] == "nano-banana-2"
        assert any(x["event"] == "task_succeeded" for x in mine)
        assert token not in log
        assert prompt not in log


def test_metrics_token(tmp_path: Path) -> None:
    env = {"IMAGEGATE_METRICS_TOKEN": "m-secret-1"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
        ok = httpx.get(server.url + "/metrics", headers={"authorization": "Bearer m-secret-1"})
        assert ok.status_code == 200 and "imagegate_requests_total" in ok.text

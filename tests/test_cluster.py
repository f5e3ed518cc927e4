"""Three gateway processes on one PostgreSQL, Redis and S3: the scale-out configuration."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import db, pg
from tests.support.receiver import CallbackReceiver
from tests.support.s3 import moto_server, new_bucket
from tests.support.server import GatewayServer, cli

GEN = "/openai/images/generations"


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with moto_server() as env:
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        yield env


def test_three_nodes_300_tasks_one_killed(tmp_path: Path, s3_env: dict[str, str]) -> None:
    prefix = uuid.uuid4().hex[:8]
    bucket, _ = new_bucket(s3_env)
    with pg.fresh_database() as url, CallbackReceiver() as receiver:
        env = {**s3_env, "IMAGEGATE_DATABASE_URL": url,
               "IMAGEGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
               "IMAGEGATE_STORAGE_URL": f"s3://{bucket}/{prefix}",
               "IMAGEGATE_CALLBACK_ALLOW": '["127.0.0.0/8"]',
               "IMAGEGATE_CALLBACK_BASE_DELAY": "0.2", "IMAGEGATE_LEASE_SECONDS": "2",
               "IMAGEGATE_CALLBACK_TIMEOUT": "2",
               "IMAGEGATE_POLL_INTERVAL": "0.5", "IMAGEGATE_SANDBOX_LATENCY": "0.6",
               "IMAGEGATE_DEFAULT_CONCURRENCY": "100", "IMAGEGATE_WORKERS": "8",
               "IMAGEGATE_RATE_LIMIT_PREFIX": f"test-{prefix}"}
        nodes = [GatewayServer(tmp_path / f"n{i}", "--sandbox", env=env).start()
                 for i in range(3)]
        try:
            out = cli("tokens", "create", "--credits", "1000", "--name", "cluster",
                      env={"IMAGEGATE_DATABASE_URL": url})
            token = out.stdout.strip().splitlines()[-1]

            def submit(i: int) -> str:
                node = nodes[i % 3]
                r = httpx.post(node.url + GEN, json={
                    "model": "nano-banana", "prompt": f"cluster {i}",
                    "callback_url": receiver.url}, headers={"authorization": f"Bearer {token}"},
                    timeout=30)
                assert r.status_code == 200, r.text
                return str(r.json()["task_id"])

            # Deliveries fail until the kill: a node killed between a receiver's 2xx and
            # recording it would make that callback arrive twice (delivery is at least
            # once; receivers dedupe by task_id), which is not what this test is about.
            receiver.fail_first = 10**9
            with ThreadPoolExecutor(16) as pool:
                ids = list(pool.map(submit, range(300)))

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                running = db.query_url(url, "SELECT lease_owner FROM tasks WHERE status = "
                                            "'running'")
                if len({owner for (owner,) in running}) >= 3:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("never saw all three nodes running tasks")
            nodes[1].kill()  # kill -9 midway, with tasks of its own running
            receiver.fail_first = 0

            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = db.query_url(url, "SELECT count(*) FROM tasks WHERE status = "
                                         "'succeeded'")[0][0]
                if done == 300 and len(receiver.delivered()) >= 300:
                    break
                time.sleep(0.2)
            time.sleep(1)  # room for a duplicate delivery to show itself
            # one request rate for the credential, however the balancer spreads the calls:
            # both nodes are kept far over the limit for a while, so limits kept per node
            # would admit about twice what one shared window allows
            rps = 5
            limited = cli("tokens", "create", "--name", "limited", "--rps", str(rps),
                          env={"IMAGEGATE_DATABASE_URL": url}).stdout.strip().splitlines()[-1]
            live = [nodes[0], nodes[2]]

            def hammer(i: int) -> Counter[int]:
                codes: Counter[int] = Counter()
                with httpx.Client(base_url=live[i % 2].url, timeout=30, headers={
                        "authorization": f"Bearer {limited}"}) as c:
                    while time.monotonic() < stop:
                        codes[c.get("/v1/models").status_code] += 1
                return codes

            began = time.monotonic()
            stop = began + 6  # long enough for per-node limits to show (test_ratelimit)
            with ThreadPoolExecutor(8) as pool:
                codes = sum(pool.map(hammer, range(8)), Counter())
            took = time.monotonic() - began
            # a sliding window admits at most rps per one-second bucket it touches
            assert set(codes) == {200, 429} and codes[429] > codes[200], codes  # saturated
            assert rps <= codes[200] <= rps * (took + 2), (codes, took)
        finally:
            for node in nodes:
                node.stop()

        statuses = Counter(s for (s,) in db.query_url(url, "SELECT status FROM tasks"))
        assert statuses == {"succeeded": 300}, statuses
        delivered = Counter(r.json["task_id"] for r in receiver.delivered())
        assert set(delivered) == set(ids), (len(delivered), len(receiver.received))
        assert set(delivered.values()) == {1}, [t for t, n in delivered.items() if n > 1]
        ledger = db.query_url(url, "SELECT task_id, kind FROM ledger WHERE task_id IS NOT NULL")
        per_task: dict[str, list[str]] = {}
        for task_id, kind in ledger:
            per_task.setdefault(task_id, []).append(kind)
        assert {t: sorted(k) for t, k in per_task.items()} == {
            i: ["reserve", "settle"] for i in ids}
        (balance,), = db.query_url(url, "SELECT balance FROM credentials WHERE name = 'cluster'")
        assert balance == 1000_000_000 - 300 * 140_000
        rerun = db.query_url(url, "SELECT count(*) FROM tasks WHERE attempts > 1")[0][0]
        assert rerun >= 1  # the killed node's tasks were finished by the others
        # images went to the shared bucket and are served by any live node
        sample = db.query_url(url, "SELECT response FROM tasks LIMIT 1")[0][0]
        image_url = (sample if isinstance(sample, dict) else __import__("json").loads(sample)
                     )["data"][0]["url"]
        assert "/files/nano-banana/" in image_url

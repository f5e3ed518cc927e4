"""Scale-out pieces: PostgreSQL migrations from many nodes, S3 storage, Redis wake-ups,
graceful shutdown."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support import db, pg
from tests.support.s3 import moto_server, new_bucket
from tests.support.server import GatewayServer, cli, free_port

GEN = "/openai/images/generations"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with moto_server() as env:
        yield env


def test_db_upgrade_from_several_nodes_at_once() -> None:
    with pg.fresh_database() as url:
        procs = [subprocess.Popen(
            [sys.executable, "-m", "imagegate", "db", "upgrade", "--database-url", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
        assert db.query_url(url, "SELECT version_num FROM alembic_version") == [("0001",)]


def test_s3_storage_served_through_files(tmp_path: Path, s3: dict[str, str]) -> None:
    bucket, client = new_bucket(s3)
    with GatewayServer(tmp_path / "d", "--sandbox", "--storage-url", f"s3://{bucket}/imgs",
                       env=s3) as server:
        r = httpx.post(server.url + GEN, json={"model": "gpt-image-2", "prompt": "s3",
                                               "size": "1536x1024", "output_format": "webp"},
                       headers={"authorization": f"Bearer {server.demo_token()}"})
        assert r.status_code == 200, r.text
        url = r.json()["data"][0]["url"]
        assert url.startswith(server.url + "/files/gpt-image/")
        got = httpx.get(url)
        assert got.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(got.content)).size == (1536, 1024)
        key = "imgs/" + url.split("/files/", 1)[1]
        stored = client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[attr-defined]
        assert stored == got.content
        assert not (server.data_dir / "files").exists()
        assert httpx.get(server.url + "/readyz").json()["checks"]["storage"] == "ok"


def test_s3_with_a_cdn_base_url(tmp_path: Path, s3: dict[str, str]) -> None:
    bucket, client = new_bucket(s3)
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))  # type: ignore[attr-defined]
    cdn = f"{s3['AWS_ENDPOINT']}/{bucket}/imgs"  # the public bucket stands in for the CDN
    with GatewayServer(tmp_path / "d", "--sandbox", "--storage-url", f"s3://{bucket}/imgs",
                       "--files-base-url", cdn, env=s3) as server:
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "cdn"},
                       headers={"authorization": f"Bearer {server.demo_token()}"})
        url = r.json()["data"][0]["url"]
        assert url.startswith(cdn + "/nano-banana/")
        assert Image.open(io.BytesIO(httpx.get(url).content)).size == (1024, 1024)


def test_memory_storage(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox", "--storage-url", "memory:///") as server:
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "mem"},
                       headers={"authorization": f"Bearer {server.demo_token()}"})
        assert httpx.get(r.json()["data"][0]["url"]).status_code == 200


def _submit_async(server: GatewayServer, token: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": f"a{i}",
                                               "async": True},
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["task_id"])
    return ids


def _worker(data: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "imagegate", "worker", "--sandbox", "--data-dir", str(data),
         *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **env})


def _wait(check, timeout: float = 30) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_redis_wakes_idle_workers_at_once(tmp_path: Path) -> None:
    data = tmp_path / "d"
    channel_env = {"IMAGEGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
                   "IMAGEGATE_POLL_INTERVAL": "30"}
    with GatewayServer(data, "--sandbox", env={**channel_env, "IMAGEGATE_WORKERS": "0"}) as api:
        token = api.demo_token()
        worker = _worker(data, channel_env)
        try:
            time.sleep(2)  # the worker has subscribed and gone idle on a 30 s poll
            (task_id,) = _submit_async(api, token, 1)
            took = _wait(lambda: db.query(data, "SELECT status FROM tasks WHERE id = ?",
                                          task_id) == [("succeeded",)], timeout=20)
            assert took < 10  # far below the 30 s poll: Redis woke it
        finally:
            worker.terminate()
            worker.wait(10)


def test_redis_down_falls_back_to_polling(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {"IMAGEGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "IMAGEGATE_POLL_INTERVAL": "0.3"}
    with GatewayServer(data, "--sandbox", env={**env, "IMAGEGATE_WORKERS": "0"}) as api:
        worker = _worker(data, env)
        try:
            ids = _submit_async(api, api.demo_token(), 3)
            _wait(lambda: db.query(data, "SELECT count(*) FROM tasks WHERE status = "
                                         "'succeeded'") == [(3,)])
            assert len(ids) == 3
        finally:
            worker.terminate()
            worker.wait(10)


def test_sigterm_hands_back_running_tasks(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {"IMAGEGATE_SANDBOX_LATENCY": "30", "IMAGEGATE_SHUTDOWN_GRACE": "1",
           "IMAGEGATE_POLL_INTERVAL": "0.2"}
    server = GatewayServer(data, "--sandbox", env=env).start()
    ids = _submit_async(server, server.demo_token(), 3)
    _wait(lambda: db.query(data, "SELECT count(*) FROM tasks WHERE status = 'running'")
          == [(3,)])
    started = time.monotonic()
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(20)
    assert time.monotonic() - started < 8
    rows = db.query(data, "SELECT status, lease_owner, attempts FROM tasks")
    assert rows == [("queued", None, 0)] * 3
    # another node picks them up
    env["IMAGEGATE_SANDBOX_LATENCY"] = "0"
    with GatewayServer(data, "--sandbox", env=env, port=server.port):
        _wait(lambda: db.query(data, "SELECT count(*) FROM tasks WHERE status = 'succeeded'")
              == [(3,)])
    kinds = db.query(data, "SELECT kind, count(*) FROM ledger WHERE task_id IS NOT NULL "
                           "GROUP BY kind ORDER BY kind")
    assert kinds == [("reserve", 3), ("settle", 3)]
    assert len(ids) == 3


def test_cli_db_upgrade_on_sqlite(tmp_path: Path) -> None:
    out = cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert "latest schema" in out.stdout
    assert db.query(tmp_path, "SELECT version_num FROM alembic_version") == [("0001",)]

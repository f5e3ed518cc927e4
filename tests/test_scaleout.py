"""Scale-out pieces: migrations from many nodes, S3 storage, Redis wake-ups and channels,
graceful shutdown. The API-level tests run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from tests.support import backend as backends
from tests.support import db, pg
from tests.support.s3 import moto_server, new_bucket
from tests.support.server import GatewayServer, cli, free_port

GEN = "/openai/images/generations"
HEAD = "0003"
REDIS = "redis://127.0.0.1:6379/0"
on_both_backends = pytest.mark.usefixtures("backend")
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # about Redis


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
        assert db.query_url(url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
        assert db.query_url(url, "SELECT name, value FROM revisions") == [("credentials", 0)]


async def _migrate_to(url: str, revision: str) -> None:
    from alembic import command
    from sqlalchemy.ext.asyncio import create_async_engine

    from imagegate.db.engine import _alembic_config, normalize_url

    engine = create_async_engine(normalize_url(url))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), revision))
    finally:
        await engine.dispose()


@on_both_backends
def test_upgrade_keeps_data_written_before_it(tmp_path: Path) -> None:
    """A database at 0001 with a credential and its ledger, upgraded by four nodes at once:
    the token still works and nothing was lost."""
    from imagegate.core.accounts.credentials import hash_token

    data = tmp_path / "d"
    data.mkdir()
    url = backends.database_url_for(data) or f"sqlite+aiosqlite:///{data / 'imagegate.db'}"
    asyncio.run(_migrate_to(url, "0001"))
    token, now = "ig-" + "k" * 32, time.time()
    db.execute(url, "INSERT INTO credentials (id, name, application, token_hash, token_prefix, "
                    "scopes, balance, disabled, webhook_secret, created_at) VALUES "
                    "(?, 'old', 'default', ?, ?, ?, 2000000, ?, 'whsec_x', ?)",
               "c-old", hash_token(token), token[:8], '["openai-images"]', False, now)
    db.execute(url, "INSERT INTO ledger (credential_id, task_id, kind, amount, balance_after, "
                    "created_at) VALUES ('c-old', NULL, 'grant', 2000000, 2000000, ?)", now)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "imagegate", "db", "upgrade", "--database-url", url,
         "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    assert db.query_url(url, "SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert db.query_url(url, "SELECT id, deleted_at FROM credentials") == [("c-old", None)]
    assert db.query_url(url, "SELECT name, value FROM revisions") == [("credentials", 0)]
    with GatewayServer(data, "--sandbox", "--database-url", url) as server:
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "old"},
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.headers["x-credits-charged"] == "0.14", r.text
    kinds = db.query_url(url, "SELECT kind FROM ledger WHERE credential_id = 'c-old' "
                              "ORDER BY id")
    assert kinds == [("grant",), ("reserve",), ("settle",)]


@on_both_backends
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


@on_both_backends
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


@on_both_backends
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


def _worker(api: GatewayServer, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """A worker process on the API node's database, writing image URLs under its address."""
    if api.database_url:
        env = {**env, "IMAGEGATE_DATABASE_URL": api.database_url}
    return subprocess.Popen(
        [sys.executable, "-m", "imagegate", "worker", "--sandbox", "--data-dir",
         str(api.data_dir), "--public-base-url", api.url, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **env})


def _wait(check, timeout: float = 30) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@sqlite_only
@on_both_backends
def test_redis_wakes_idle_workers_at_once(tmp_path: Path) -> None:
    data = tmp_path / "d"
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    channel_env = {"IMAGEGATE_REDIS_URL": REDIS, "IMAGEGATE_POLL_INTERVAL": "90",
                   "IMAGEGATE_RATE_LIMIT_PREFIX": prefix}
    with GatewayServer(data, "--sandbox", env={**channel_env, "IMAGEGATE_WORKERS": "0"}) as api:
        token = api.demo_token()
        worker = _worker(api, channel_env)
        try:
            listeners = redis.Redis.from_url(REDIS)
            _wait(lambda: dict(listeners.pubsub_numsub(f"{prefix}:tasks-queued"))
                  .get(f"{prefix}:tasks-queued".encode(), 0) >= 1, timeout=60)
            listeners.close()
            time.sleep(1)  # past the worker's first poll: now idle on a 90 s one
            (task_id,) = _submit_async(api, token, 1)
            took = _wait(lambda: db.query(data, "SELECT status FROM tasks WHERE id = ?",
                                          task_id) == [("succeeded",)], timeout=45)
            assert took < 30  # far below the 90 s poll: Redis woke it
        finally:
            worker.terminate()
            worker.wait(10)


@sqlite_only
@on_both_backends
def test_redis_down_falls_back_to_polling(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {"IMAGEGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "IMAGEGATE_POLL_INTERVAL": "0.3"}
    with GatewayServer(data, "--sandbox", env={**env, "IMAGEGATE_WORKERS": "0"}) as api:
        worker = _worker(api, env)
        try:
            ids = _submit_async(api, api.demo_token(), 3)
            _wait(lambda: db.query(data, "SELECT count(*) FROM tasks WHERE status = "
                                         "'succeeded'") == [(3,)])
            assert len(ids) == 3
        finally:
            worker.terminate()
            worker.wait(10)


@on_both_backends
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


@sqlite_only
@on_both_backends
def test_redis_channels_belong_to_the_deployment(tmp_path: Path) -> None:
    """Two deployments sharing one Redis keep apart by IMAGEGATE_RATE_LIMIT_PREFIX: task
    wake-ups and credential changes (from the API and from the CLI) use its channels."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    env = {"IMAGEGATE_REDIS_URL": REDIS, "IMAGEGATE_RATE_LIMIT_PREFIX": prefix,
           "IMAGEGATE_ADMIN_KEY": "adm-channels-0123456789abcdef"}
    listener = redis.Redis.from_url(REDIS).pubsub()
    listener.psubscribe(f"{prefix}:*")
    try:
        with GatewayServer(tmp_path / "d", "--sandbox", env=env) as api:
            admin = {"authorization": "Bearer adm-channels-0123456789abcdef"}
            cred = httpx.post(api.url + "/admin/credentials", headers=admin,
                              json={"name": "ch", "credits": 1}).json()
            r = httpx.post(api.url + GEN, json={"model": "nano-banana", "prompt": "c",
                                                "async": True},
                           headers={"authorization": f"Bearer {cred['token']}"})
            assert r.status_code == 200, r.text
            httpx.post(f"{api.url}/admin/credentials/{cred['id']}/disable", headers=admin)
            cli("tokens", "enable", cred["id"], "--data-dir", str(api.data_dir), env=api.env)
            seen: list[tuple[str, str]] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len(seen) < 3:
                message = listener.get_message(timeout=0.5)
                if message and message["type"] == "pmessage":
                    seen.append((message["channel"].decode(), message["data"].decode()))
    finally:
        listener.close()
    assert (f"{prefix}:tasks-queued", "1") in seen, seen
    assert seen.count((f"{prefix}:credentials-changed", cred["id"])) == 2, seen


def test_cli_db_upgrade_on_sqlite(tmp_path: Path) -> None:
    out = cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert "latest schema" in out.stdout
    assert db.query(tmp_path, "SELECT version_num FROM alembic_version") == [(HEAD,)]

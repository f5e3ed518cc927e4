"""Hosted files: permanent, immutable, safe; and they survive a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import db
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL


@pytest.mark.parametrize("path", [
    "/files/../imagegate.db", "/files/..%2Fimagegate.db", "/files/%2e%2e/imagegate.db",
    "/files/nano-banana/../../imagegate.db", "/files/nano-banana/%2e%2e%2f%2e%2e%2fimagegate.db",
    "/files//etc/passwd", "/files/%2Fetc%2Fpasswd", "/files/nano-banana/missing.png",
    "/files/demo-token", "/files/..", "/files/.", "/files/",
])
def test_traversal_and_unknown_keys_are_404(sandbox: GatewayServer, path: str) -> None:
    r = httpx.get(sandbox.url + path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "no_api"
    assert b"ig-" not in r.content


def test_file_headers(client: httpx.Client) -> None:
    r = client.post("/v1/images/generations", json={
        "model": "gpt-image-2", "prompt": "x", "output_format": "jpeg", "size": "1024x1024"})
    url = r.json()["data"][0]["url"]
    assert url.endswith(".jpeg")
    f = httpx.get(url)
    assert f.headers["content-type"] == "image/jpeg"
    assert f.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert f.content[:3] == b"\xff\xd8\xff"
    assert int(f.headers["content-length"]) == len(f.content)
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == f.headers["content-length"]


def test_restart_keeps_images_and_tasks(tmp_path: Path) -> None:
    data = tmp_path / "d"
    server = GatewayServer(data, "--sandbox").start()
    token = server.demo_token()
    r = httpx.post(server.url + "/openai/images/generations",
                   json={"model": "nano-banana", "prompt": "persist me"},
                   headers={"authorization": f"Bearer {token}"})
    url, task_id = r.json()["data"][0]["url"], r.json()["task_id"]
    before = httpx.get(url).content
    server.stop()

    again = GatewayServer(data, "--sandbox", port=server.port).start()
    try:
        assert again.demo_token() == token  # the demo token is kept, not re-issued
        after = httpx.get(url)
        assert after.status_code == 200 and after.content == before
        rows = db.query(data, "SELECT id, status, model, request FROM tasks")
        assert [(i, s, m) for i, s, m, _ in rows] == [(task_id, "succeeded", "nano-banana")]
        assert "persist me" in str(rows[0][3])
        r = httpx.post(again.url + "/openai/images/generations",
                       json={"model": "nano-banana", "prompt": "again"},
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        again.stop()


def test_health_and_ready(sandbox: GatewayServer) -> None:
    assert httpx.get(sandbox.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(sandbox.url + "/readyz").json()
    assert ready == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}


def test_models_list(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    models = {m["id"]: m for m in body["data"]}
    assert set(models) == {"dall-e-3", "gpt-image-1", "gpt-image-2", "nano-banana",
                           "nano-banana-2", "nano-banana-pro"}
    assert models["nano-banana"]["family"] == "nano-banana"
    assert models["nano-banana-pro"]["price"] == 0.35
    assert all(m["available"] for m in models.values())


def test_models_need_a_token(sandbox: GatewayServer) -> None:
    assert httpx.get(sandbox.url + "/v1/models").status_code == 401


def test_head_health_and_one_model(client: httpx.Client, sandbox: GatewayServer) -> None:
    assert httpx.head(sandbox.url + "/healthz").status_code == 200
    assert httpx.head(sandbox.url + "/readyz").status_code == 200
    one = client.get("/v1/models/nano-banana-2")
    assert one.status_code == 200 and one.json()["id"] == "nano-banana-2"
    assert one.json()["price"] == 0.28
    missing = client.get("/v1/models/midjourney")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_api"


def test_every_success_says_what_it_charged(client: httpx.Client) -> None:
    submitted = client.post("/openai/images/generations",
                            json={"model": "nano-banana", "prompt": "x", "async": True})
    assert submitted.status_code == 200 and submitted.headers["x-credits-charged"] == "0"
    for r in (client.get("/v1/models"),
              client.post("/openai/tasks", json={"action": "retrieve",
                                                 "id": submitted.json()["task_id"]})):
        assert r.status_code == 200 and r.headers["x-credits-charged"] == "0"


def test_head_on_object_storage_reads_no_body(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox", "--storage-url", "memory:///") as server:
        r = httpx.post(server.url + "/openai/images/generations", timeout=30,
                       json={"model": "nano-banana", "prompt": "mem"},
                       headers={"authorization": f"Bearer {server.demo_token()}"})
        url = r.json()["data"][0]["url"]
        whole = httpx.get(url)
        head = httpx.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(whole.content))
        assert head.headers["content-type"] == "image/png"
        assert httpx.head(url.replace("_0.png", "_9.png")).status_code == 404

"""Async submission, signed callbacks with retries, SSRF refusals and task queries."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from imagegate import webhooks
from tests.support import backend as backends
from tests.support import db
from tests.support.receiver import CallbackReceiver
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

GEN = "/openai/images/generations"
ALLOW_LOCAL = {"IMAGEGATE_CALLBACK_ALLOW": '["127.0.0.0/8"]',
               "IMAGEGATE_CALLBACK_BASE_DELAY": "0.1", "IMAGEGATE_POLL_INTERVAL": "0.2"}


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    backends.current = backend
    server = GatewayServer(tmp_path_factory.mktemp("async"), "--sandbox", env=ALLOW_LOCAL)
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def cred(gw: GatewayServer) -> tuple[str, str]:
    return gw.credential(credits=1000, name="async")


@pytest.fixture()
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as r:
        yield r


def post(gw: GatewayServer, token: str, payload: dict[str, object], **headers: str
         ) -> httpx.Response:
    return httpx.post(gw.url + GEN, json=payload, timeout=30,
                      headers={"authorization": f"Bearer {token}", **headers})


def retrieve(gw: GatewayServer, token: str, **query: object) -> dict[str, object]:
    r = httpx.post(gw.url + "/openai/tasks", json={"action": "retrieve", **query},
                   headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_status(gw: GatewayServer, token: str, task_id: str, timeout: float = 20
                ) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = retrieve(gw, token, id=task_id)
        if task.get("status") in ("succeeded", "failed"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish: {task}")


def wait_callback(gw: GatewayServer, token: str, task_id: str, timeout: float = 60
                  ) -> dict[str, object]:
    """The task record once its callback delivery has ended (delivered or failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = retrieve(gw, token, id=task_id)
        callback = task.get("callback")
        if isinstance(callback, dict) and callback["state"] in ("delivered", "failed"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"callback of {task_id} did not end: {task}")


def charged(gw: GatewayServer, task_id: str) -> float:
    """What the ledger says the task cost, independently of the task record."""
    rows = db.query(gw.data_dir, "SELECT amount FROM ledger WHERE task_id = ?", task_id)
    return -sum(amount for (amount,) in rows) / 1_000_000


def credential_id(gw: GatewayServer, name: str) -> str:
    ((cid,),) = db.query(gw.data_dir, "SELECT id FROM credentials WHERE name = ?", name)
    return str(cid)


def test_callback_success_payload_is_signed(gw: GatewayServer, cred: tuple[str, str],
                                           receiver: CallbackReceiver) -> None:
    token, secret = cred
    r = post(gw, token, {"model": "dall-e-3", "prompt": "A cute baby sea otter",
                         "callback_url": receiver.url + "/hook?x=1"})
    assert r.status_code == 200
    accepted = r.json()
    assert set(accepted) == {"task_id", "trace_id"}
    (got,) = receiver.wait_for(1)
    assert got.path == "/hook?x=1"
    assert got.headers["content-type"] == "application/json"
    # the signature, checked by the SPEC's definition rather than by our own helper
    header = got.headers["x-imagegate-signature"]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    assert match, header
    t = int(match[1])
    assert abs(time.time() - t) < 300
    mac = hmac.new(secret.encode(), f"{t}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, match[2])

    task = wait_callback(gw, token, accepted["task_id"])
    response = task["response"]
    assert isinstance(response, dict)
    expected = {"success": True, "task_id": accepted["task_id"],
                "trace_id": accepted["trace_id"],
                "data": {"created": response["created"], "data": response["data"]}}
    assert got.body == orjson.dumps(expected)
    assert list(got.json) == ["success", "task_id", "trace_id", "data"]
    assert response["data"][0]["url"].startswith(gw.url + "/files/dalle/")
    assert httpx.get(response["data"][0]["url"]).status_code == 200

    assert task["status"] == "succeeded"
    assert task["credential_id"] == credential_id(gw, "async")
    created, started, finished = task["created_at"], task["started_at"], task["finished_at"]
    assert isinstance(started, float) and isinstance(finished, float)
    assert isinstance(created, float) and created <= started <= finished
    assert task["elapsed"] == round(finished - started, 3)
    assert task["credits"] == charged(gw, accepted["task_id"]) == 0.04
    callback = task["callback"]
    assert isinstance(callback, dict) and callback["state"] == "delivered"
    assert callback["url"] == receiver.url + "/hook?x=1"
    (attempt,) = callback["attempts"]
    assert attempt["status"] == 200 and attempt["error"] is None
    assert callback["delivered_at"] == attempt["at"]


def test_verify_helper(cred: tuple[str, str]) -> None:
    """webhooks.verify against a signature made by hand: tolerance, secret, body, str."""
    _, secret = cred
    body = b'{"success":true,"task_id":"t"}'
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    header = f"t={t},v1={mac}"
    assert webhooks.sign(secret, body, t) == header
    assert webhooks.verify(secret, body, header)
    assert webhooks.verify(secret, body.decode(), header)  # frameworks hand over str
    assert webhooks.verify(secret, body, header, now=t + 299)
    assert not webhooks.verify(secret, body, header, now=t + 301)
    assert not webhooks.verify(secret, body, header, now=t - 301)
    assert not webhooks.verify(secret, body, header, tolerance=10, now=t + 11)
    assert not webhooks.verify("whsec_wrong", body, header)
    assert not webhooks.verify(secret, body.replace(b"true", b"fals"), header)
    assert not webhooks.verify(secret, body + b" ", header)
    assert not webhooks.verify(secret, body, f"t={t + 1},v1={mac}")  # t is signed too
    for broken in ("", "v1=" + mac, f"t=soon,v1={mac}", f"t={t}", f"t={t},v1=\u00e9"):
        assert not webhooks.verify(secret, body, broken), broken


def test_callback_of_a_gpt_image_model_carries_openais_fields(
        gw: GatewayServer, cred: tuple[str, str], receiver: CallbackReceiver) -> None:
    token, _ = cred
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "fields", "size": "1536x1024",
                         "quality": "low", "callback_url": receiver.url + "/fields"})
    task = wait_callback(gw, token, r.json()["task_id"])
    (got,) = [c for c in receiver.wait_for(1) if c.path == "/fields"]
    fields = {k: got.json["data"][k] for k in ("size", "quality", "background",
                                                "output_format")}
    assert fields == {"size": "1536x1024", "quality": "low", "background": "opaque",
                      "output_format": "png"}
    assert {k: task["response"][k] for k in fields} == fields


def test_async_flag_without_callback(gw: GatewayServer, cred: tuple[str, str]) -> None:
    token, _ = cred
    r = post(gw, token, {"model": "nano-banana", "prompt": "x", "async": True,
                         "trace_id": "async-trace-1"})
    assert r.json()["trace_id"] == "async-trace-1"
    task = wait_status(gw, token, r.json()["task_id"])
    assert task["status"] == "succeeded" and task["callback"] is None
    assert task["credits"] == 0.14
    assert retrieve(gw, token, trace_id="async-trace-1")["id"] == r.json()["task_id"]


def test_callback_failure_payload(tmp_path: Path, receiver: CallbackReceiver) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox", env=ALLOW_LOCAL) as server:
        token, secret = server.credential(credits=5)
        (server.data_dir / "files").mkdir(exist_ok=True)
        (server.data_dir / "files" / "gpt-image").write_text("in the way")
        r = post(server, token, {"model": "gpt-image-2", "prompt": "x",
                                 "callback_url": receiver.url})
        (got,) = receiver.wait_for(1)
        assert webhooks.verify(secret, got.body, got.headers["x-imagegate-signature"])
        task_id, trace_id = r.json()["task_id"], r.json()["trace_id"]
        assert got.body == (
            b'{"success":false,"task_id":"' + task_id.encode() + b'","trace_id":"'
            + trace_id.encode() + b'","error":{"code":"api_error","message":"internal error"}}')
        assert db.query(server.data_dir, "SELECT balance FROM credentials WHERE name = 'test'"
                        ) == [(5_000_000,)]
        task = wait_callback(server, token, task_id)
        assert task["status"] == "failed"
        assert task["credits"] == 0 and charged(server, task_id) == 0  # reserved, released
        assert task["credential_id"] == credential_id(server, "test")
        assert isinstance(task["started_at"], float) and isinstance(task["elapsed"], float)
        callback = task["callback"]
        assert isinstance(callback, dict) and callback["state"] == "delivered"


def test_receiver_down_then_up(gw: GatewayServer, cred: tuple[str, str],
                               receiver: CallbackReceiver) -> None:
    token, _ = cred
    receiver.fail_first = 3
    r = post(gw, token, {"model": "nano-banana", "prompt": "retry me",
                         "callback_url": receiver.url})
    receiver.wait_for(1)
    time.sleep(0.5)  # a further (wrong) delivery would show up here
    assert [x.status for x in receiver.received] == [503, 503, 503, 200]
    task = retrieve(gw, token, id=r.json()["task_id"])
    callback = task["callback"]
    assert isinstance(callback, dict) and callback["state"] == "delivered"
    attempts = callback["attempts"]
    assert [a["status"] for a in attempts] == [503, 503, 503, 200]
    assert [a["error"] for a in attempts[:3]] == ["HTTP 503"] * 3
    assert [a.get("retry_in") for a in attempts] == [0.1, 0.2, 0.4, None]  # doubling backoff
    assert all(b["at"] >= a["at"] + a["retry_in"] for a, b in zip(attempts, attempts[1:],
                                                                    strict=False))


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/hook", "http://172.16.5.4/hook", "http://192.168.1.1/hook",
    "http://127.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/latest/meta-data",
    "http://localhost/hook", "http://0.0.0.0/hook", "http://224.0.0.1/hook",
    "http://[::ffff:127.0.0.1]/hook", "http://[::ffff:7f00:1]/", "http://[::127.0.0.1]/",
    "http://[2002:7f00:1::]/", "http://[2002:a9fe:a9fe::1]/", "http://[fec0::1]/",
    "http://[64:ff9b::a00:1]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[fc00::1]/",
    "http://[fe80::1]/", "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://100.64.0.1/", "http://127.1/", "http://2130706433/", "http://[::]/",
    "ftp://example.com/x", "file:///etc/passwd",
    "gopher://example.com/", "http:///nohost", "not a url", "http://user:pw@8.8.8.8/",
])
def test_ssrf_matrix(tmp_path_factory: pytest.TempPathFactory, strict_gw: GatewayServer,
                     url: str) -> None:
    token = strict_gw.demo_token()
    before = db.query(strict_gw.data_dir, "SELECT count(*) FROM tasks")
    r = post(strict_gw, token, {"model": "nano-banana", "prompt": "x", "callback_url": url})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request"
    assert "callback_url" in r.json()["error"]["message"]
    assert db.query(strict_gw.data_dir, "SELECT count(*) FROM tasks") == before


@pytest.fixture(scope="module")
def strict_gw(backend: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[GatewayServer]:
    backends.current = backend
    server = GatewayServer(tmp_path_factory.mktemp("strict"), "--sandbox")
    yield server.start()
    server.stop()


def test_delivery_rechecks_the_address(tmp_path: Path) -> None:
    """A URL that passed at submission is checked again after DNS at delivery time."""
    import asyncio

    from imagegate.core.ssrf import CallbackPolicy, CallbackRefused

    async def check() -> None:
        with pytest.raises(CallbackRefused):
            await CallbackPolicy().resolve("http://localhost:9/hook")
        host, addrs = await CallbackPolicy(["127.0.0.0/8"]).resolve("http://localhost:9/x")
        assert host == "localhost" and "127.0.0.1" in addrs

    asyncio.run(check())


def test_task_queries(gw: GatewayServer, cred: tuple[str, str]) -> None:
    token, _ = cred
    other = gw.token(credits=10, name="other")
    t0 = time.time()
    ids = []
    for i in range(5):
        r = post(gw, token, {"model": "nano-banana", "prompt": f"q{i}", "trace_id": f"q-{i}"})
        assert r.status_code == 200
        ids.append(r.json()["task_id"])
    sync_task = retrieve(gw, token, id=ids[0])
    assert sync_task["status"] == "succeeded" and sync_task["type"] == "images_generations"
    assert sync_task["request"]["prompt"] == "q0"
    assert isinstance(sync_task["elapsed"], float)
    # trace_id wins over id
    assert retrieve(gw, token, id=ids[0], trace_id="q-3")["id"] == ids[3]
    # unknown or someone else's: {}
    assert retrieve(gw, token, id="00000000-0000-0000-0000-000000000000") == {}
    assert retrieve(gw, other, id=ids[0]) == {}
    auth = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{gw.url}/v1/tasks/{ids[1]}", headers=auth).json()["id"] == ids[1]
    assert httpx.get(f"{gw.url}/v1/tasks/{ids[1]}",
                     headers={"authorization": f"Bearer {other}"}).json() == {}

    def batch(**q: object) -> dict[str, object]:
        r = httpx.post(gw.url + "/openai/tasks", json={"action": "retrieve_batch", **q},
                       headers=auth)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    got = batch(ids=ids[:3])
    assert got["count"] == 3 and {t["id"] for t in got["items"]} == set(ids[:3])
    assert {t["id"] for t in batch(trace_ids=["q-1", "q-4"])["items"]} == {ids[1], ids[4]}
    recent = batch(created_at_min=t0, limit=2)
    assert recent["count"] == 5 and len(recent["items"]) == 2
    page2 = batch(created_at_min=t0, limit=2, offset=2)
    page3 = batch(created_at_min=t0, limit=2, offset=4)
    seen = [t["id"] for p in (recent, page2, page3) for t in p["items"]]
    assert sorted(seen) == sorted(ids)
    assert batch(created_at_max=t0 - 3600)["count"] == 0
    assert batch(ids=ids, type="images_edits")["count"] == 0
    assert batch(ids=ids, type="images_generations")["count"] == 5
    for bad in ({"limit": 101}, {"offset": -1}, {"ids": "x"}, {"type": "video"},
                {"created_at_min": "yesterday"}):
        r = httpx.post(gw.url + "/openai/tasks", json={"action": "retrieve_batch", **bad},
                       headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", bad
    r = httpx.post(gw.url + "/openai/tasks", json={"action": "delete"}, headers=auth)
    assert r.status_code == 400


def test_batch_default_and_largest_limit(gw: GatewayServer) -> None:
    token = gw.token(credits=10, name="paging")
    ids = [post(gw, token, {"model": "nano-banana", "prompt": f"p{i}"}).json()["task_id"]
           for i in range(13)]
    auth = {"authorization": f"Bearer {token}"}

    def batch(**q: object) -> httpx.Response:
        return httpx.post(gw.url + "/openai/tasks", json={"action": "retrieve_batch", **q},
                          headers=auth)

    default = batch().json()
    assert default["count"] == 13 and len(default["items"]) == 12
    assert len(batch(limit=None).json()["items"]) == 12
    largest = batch(limit=100)
    assert largest.status_code == 200
    assert sorted(t["id"] for t in largest.json()["items"]) == sorted(ids)
    too_many = batch(limit=101)
    assert too_many.status_code == 400 and "limit" in too_many.json()["error"]["message"]


def test_idempotent_replays(gw: GatewayServer) -> None:
    token = gw.token(credits=1, name="idem")
    payload = {"model": "nano-banana", "prompt": "once", "response_format": "b64_json"}
    first = post(gw, token, payload, **{"Idempotency-Key": "k-sync"})
    second = post(gw, token, payload, **{"Idempotency-Key": "k-sync"})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    conflict = post(gw, token, {**payload, "prompt": "twice"}, **{"Idempotency-Key": "k-sync"})
    assert conflict.status_code == 409 and "different request body" in conflict.text
    a1 = post(gw, token, {"model": "nano-banana", "prompt": "a", "async": True},
              **{"Idempotency-Key": "k-async"})
    a2 = post(gw, token, {"model": "nano-banana", "prompt": "a", "async": True},
              **{"Idempotency-Key": "k-async"})
    assert a1.json() == a2.json()
    wait_status(gw, token, a1.json()["task_id"])
    # two tasks, two charges of 0.14 from 1 credit
    prefix = token[:8]
    rows = db.query(gw.data_dir, "SELECT count(*) FROM tasks t JOIN credentials c ON "
                                 "c.id = t.credential_id WHERE c.token_prefix = ?", prefix)
    assert rows == [(2,)]
    assert db.query(gw.data_dir, "SELECT balance FROM credentials WHERE token_prefix = ?",
                    prefix) == [(720_000,)]

"""A JSON-body fuzzer over generations, task queries and the admin API: whatever arrives, the
answer is never a 5xx, always a JSON body (the SPEC error body for errors), and no credit is
made or lost (each balance equals the sum of its ledger)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support import backend as backends
from tests.support import db
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

ADMIN_KEY = "adm-fuzz-1-0123456789abcdefgh"
EXAMPLES = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
DEEP = b'{"model": "nano-banana", "prompt": "x", "junk": ' + b"[" * 1000 + b"]" * 1000 + b"}"

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def either(*good: Any) -> st.SearchStrategy[Any]:
    """Mostly values the API knows, sometimes anything at all."""
    return st.sampled_from(good) | values


GENERATION = {
    "model": either("dall-e-3", "gpt-image-1", "gpt-image-2", "nano-banana", "nano-banana-2",
                    "nano-banana-pro", "midjourney", ""),
    "prompt": st.text(max_size=40) | values,
    "n": either(1, 2, 0, 11, 1.0, "2", True),
    "size": either("256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "auto",
                   "1024x1792", "0x1", "7x7", "99999x1", "1024x1024x1"),
    "quality": either("standard", "hd", "low", "medium", "high", "auto"),
    "style": either("vivid", "natural"),
    "background": either("transparent", "opaque", "auto"),
    "output_format": either("png", "jpeg", "webp", "gif"),
    "output_compression": either(0, 50, 100, -1, 101),
    "moderation": either("low", "auto"),
    "response_format": either("url", "b64_json"),
    "user": either("u-1", "\u0000", "x" * 300),
    "trace_id": either("t-1", "two words", "\u0000", "t" * 129),
    "async": either(True, False),
    "stream": either(True, False),
    "partial_images": either(0, 1, 3, 4, -1),
    "callback_url": either("http://127.0.0.1:9/cb", "ftp://x", "not a url", "http://\u0000"),
}
TASKS = {
    "action": either("retrieve", "retrieve_batch", "delete"),
    "id": either("00000000-0000-0000-0000-000000000000", "a\u0000"),
    "trace_id": either("t-1", "\u0000"),
    "ids": st.lists(st.text(max_size=8), max_size=3) | values,
    "trace_ids": st.lists(st.text(max_size=8), max_size=3) | values,
    "created_at_min": either(0, 1e12, -1, "yesterday"),
    "created_at_max": either(0, 1e12),
    "type": either("images_generations", "images_edits", "video"),
    "offset": either(0, 5, -1, 10**12),
    "limit": either(1, 12, 100, 0, 101),
}
ADMIN = {
    "name": either("fuzz", "", " ", "n" * 201, "a\u0000"),
    "application": either("app", ""),
    "credits": either(0, 1, 0.5, 1e-7, -1, 1e10, "1", float(2**63)),
    "scopes": either(["openai-images"], [], ["nope"], "openai-images"),
    "expires_at": either(None, 0, 4e9, -1, "tomorrow"),
    "rate_limits": either({"rps": 5}, {"concurrency": 0}, {"nope": 1}, {"rps": True}),
    "disabled": either(True, False, "yes"),
}


def bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[bytes]:
    """JSON objects of some known fields and some junk; now and then bytes that are not."""
    objects = st.fixed_dictionaries({}, optional={
        **fields, "junk": values,
        "deep": st.integers(1, 60).map(lambda d: json.loads("[" * d + "]" * d))})
    return (objects.map(lambda o: json.dumps(o).encode())
            | st.binary(max_size=40) | st.sampled_from([b"", b"[]", b"null", b"{", b"\xff"]))


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.request.content[:300], r.text[:300])
    if r.headers["content-type"].startswith("text/event-stream"):  # `stream: true` (SPEC 8)
        assert r.status_code == 200 and r.headers["x-task-id"]
        blocks = [b.split("\n") for b in r.text.split("\n\n") if b]
        assert blocks and all(len(b) == 2 and b[0].startswith("event: ") for b in blocks)
        assert all(json.loads(b[1].removeprefix("data: "))["type"] == b[0][7:]
                   for b in blocks), r.text[:300]
        return
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict)
    if r.status_code >= 400:
        assert body["success"] is False and set(body) == {"success", "error", "trace_id"}
        assert isinstance(body["error"]["code"], str)
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        assert len(r.content) < 2000


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    backends.current = backend
    server = GatewayServer(tmp_path_factory.mktemp(f"fuzz-{backend}"), "--sandbox",
                           env={"IMAGEGATE_ADMIN_KEY": ADMIN_KEY})
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayServer) -> Iterator[httpx.Client]:
    token = gw.token(credits=50, name="fuzz")
    with httpx.Client(base_url=gw.url, timeout=60, headers={
            "authorization": f"Bearer {token}", "content-type": "application/json"}) as c:
        yield c


@given(body=bodies(GENERATION), key=st.none() | st.sampled_from(["k-1", "k-2"]))
@example(body=DEEP, key=None).via("issue 13: a 500 for the whole group commit")
@example(body=DEEP, key="k-deep").via("issue 13: a 500 at once")
@EXAMPLES
def test_generations(client: httpx.Client, body: bytes, key: str | None) -> None:
    headers = {"idempotency-key": key} if key else {}
    check(client.post("/v1/images/generations", content=body, headers=headers))


@given(body=bodies(TASKS))
@example(body=b'{"action": "retrieve", "id": "a\\u0000"}').via("issue 13: NUL")
@example(body=b'{"action": "retrieve_batch", "trace_ids": ["\\u0000"]}').via("issue 13")
@example(body=json.dumps({"action": "A" * 100_000}).encode()).via("issue 13: echo")
@EXAMPLES
def test_task_queries(client: httpx.Client, body: bytes) -> None:
    check(client.post("/openai/tasks", content=body))


@given(body=bodies(ADMIN), action=st.sampled_from(["create", "change", "topup"]),
       target=st.sampled_from(["known", "missing", "nul"]))
@example(body=b'{"name": "a\\u0000"}', action="create", target="known").via("issue 13")
@example(body=b'{"credits": 1}', action="topup", target="nul").via("issue 13")
@EXAMPLES
def test_admin(gw: GatewayServer, body: bytes, action: str, target: str) -> None:
    auth = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    with httpx.Client(base_url=gw.url, timeout=30, headers=auth) as admin:
        if action == "create":
            check(admin.post("/admin/credentials", content=body))
            return
        known = admin.get("/admin/credentials").json()["items"][0]["id"]
        cid = {"known": known, "missing": "nope", "nul": "%00"}[target]
        if action == "change":
            check(admin.patch(f"/admin/credentials/{cid}", content=body))
        else:
            check(admin.post(f"/admin/credentials/{cid}/topup", content=body))


def test_every_balance_is_its_ledger(gw: GatewayServer, client: httpx.Client) -> None:
    """Runs after the fuzzing above, on the same database."""
    rows = db.query(gw.data_dir, "SELECT c.id, c.balance, COALESCE(SUM(l.amount), 0) "
                    "FROM credentials c LEFT JOIN ledger l ON l.credential_id = c.id "
                    "GROUP BY c.id, c.balance")
    assert len(rows) > 1
    assert [(cid, int(b)) for cid, b, _ in rows] == [(cid, int(t)) for cid, _, t in rows]

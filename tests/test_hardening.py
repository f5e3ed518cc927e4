"""What an attacker and a bad day found (issue 13): stored junk, deep nesting, NUL bytes,
clients that vanish mid-body, huge sandbox renders, symlinks out of the store, long echoes."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate.core.tasks.intake import Intake
from imagegate.db.engine import Sessions
from tests.support import backend as backends
from tests.support import db, pg
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

GEN = "/openai/images/generations"
TASKS = "/openai/tasks"
ADMIN_KEY = "adm-hardening-1-0123456789abcdef"
QUERY_CAP = 65536


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    backends.current = backend
    server = GatewayServer(tmp_path_factory.mktemp(f"hardening-{backend}"), "--sandbox", env={
        "IMAGEGATE_ADMIN_KEY": ADMIN_KEY, "IMAGEGATE_TASK_QUERY_MAX_BYTES": str(QUERY_CAP)})
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=1000, name="hard")


def call(gw: GatewayServer, token: str, path: str, payload: Any, **headers: str
         ) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(gw.url + path, content=content, timeout=60, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json", **headers})


def admin(gw: GatewayServer, method: str, path: str, payload: Any = None) -> httpx.Response:
    return httpx.request(method, gw.url + path, json=payload, timeout=30,
                         headers={"authorization": f"Bearer {ADMIN_KEY}"})


def balance(gw: GatewayServer, name: str = "hard") -> int:
    return int(db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = ?",
                        name)[0][0])


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# --- 1. tasks store what their family reads, and one query answers a bounded amount -------

def test_unknown_fields_are_not_stored(gw: GatewayServer, token: str) -> None:
    junk = "j" * 900_000
    r = call(gw, token, GEN, {"model": "nano-banana", "prompt": "x", "size": "512x512",
                              "junk": junk, "quality": "hd", "metadata": {"a": [1, 2]}})
    assert r.status_code == 200, r.text
    record = call(gw, token, TASKS, {"action": "retrieve", "id": r.json()["task_id"]})
    assert record.json()["request"] == {"model": "nano-banana", "prompt": "x",
                                        "size": "512x512"}
    assert len(record.content) < 5000
    stored = db.query(gw.data_dir, "SELECT request FROM tasks WHERE id = ?",
                      r.json()["task_id"])[0][0]
    assert "junk" not in str(stored)


def test_a_different_body_under_one_key_is_still_a_conflict(gw: GatewayServer,
                                                            token: str) -> None:
    body = {"model": "nano-banana", "prompt": "same", "seed": 1}
    assert call(gw, token, GEN, body, **{"Idempotency-Key": "junk-k"}).status_code == 200
    r = call(gw, token, GEN, {**body, "seed": 2}, **{"Idempotency-Key": "junk-k"})
    assert r.status_code == 409, r.text


def test_a_batch_answer_is_bounded_and_pages_on(gw: GatewayServer) -> None:
    token = gw.token(credits=100, name="pages")
    ids = set()
    for i in range(4):  # each record carries ~60 KB: the prompt, and again as revised_prompt
        r = call(gw, token, GEN, {"model": "nano-banana", "prompt": f"{i}" + "p" * 30_000,
                                  "size": "256x256"})
        ids.add(r.json()["task_id"])
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = call(gw, token, TASKS, {"action": "retrieve_batch", "limit": 100,
                                       "offset": offset})
        assert page.status_code == 200 and page.json()["count"] == 4
        assert len(page.content) < QUERY_CAP + 70_000  # at most one record past the cap
        assert 1 <= len(page.json()["items"]) < 4
        seen += [t["id"] for t in page.json()["items"]]
        offset = page.json()["next_offset"]
    assert sorted(seen) == sorted(ids)


# --- 2. nesting is refused up front; one bad row cannot fail another tenant's -------------

def test_deep_nesting_is_refused_before_anything_is_charged(gw: GatewayServer,
                                                            token: str) -> None:
    before = balance(gw)
    head = b'{"model": "nano-banana", "prompt": "x", "junk": '
    for depth, headers in ((300, {}), (1000, {}), (300, {"Idempotency-Key": "deep-1"})):
        r = call(gw, token, GEN, head + nested(depth) + b"}", **headers)
        assert r.status_code == 400 and "levels deep" in r.json()["error"]["message"], r.text
    r = call(gw, token, TASKS, b'{"action": "retrieve", "id": "x", "q": ' + nested(40) + b"}")
    assert r.status_code == 400
    assert admin(gw, "POST", "/admin/credentials", {"name": [[[[[[[[[[[[]]]]]]]]]]]]}
                 ).status_code == 400
    assert balance(gw) == before
    assert call(gw, token, GEN, head + nested(20) + b"}").status_code == 200  # within bounds


def test_one_bad_row_does_not_fail_another_credentials_admission(backend: str,
                                                                 tmp_path: Path) -> None:
    """A group commit holding a row the database refuses: the others are still admitted."""
    if backend == "postgresql":
        with pg.fresh_database() as url:
            asyncio.run(_admit_beside_a_bad_row(url))
    else:
        asyncio.run(_admit_beside_a_bad_row(f"sqlite+aiosqlite:///{tmp_path / 'i.db'}"))


async def _admit_beside_a_bad_row(url: str) -> None:
    from imagegate.core.accounts import manage

    sessions = Sessions(url)
    await sessions.upgrade()
    try:
        async with sessions.begin() as session:
            good = (await manage.create(session, name="good", credits=1)).credential.id
            bad = (await manage.create(session, name="bad", credits=1)).credential.id
        intake = Intake(sessions)

        def row(credential_id: str, task_id: str, request: Any) -> dict[str, Any]:
            now = time.time()
            return {"id": task_id, "trace_id": task_id, "type": "images_generations",
                    "credential_id": credential_id, "model": "nano-banana", "mode": "async",
                    "request": request, "response": None, "status": "queued",
                    "error_code": None, "error_message": None, "credits": 100, "usage": None,
                    "upstream": None, "attempts": 0, "lease_owner": None,
                    "lease_until": None, "callback_url": None, "callback": None,
                    "callback_next_at": None, "idempotency_key": None, "request_hash": None,
                    "created_at": now, "started_at": None, "finished_at": None}

        unstorable = {"prompt": object()}  # no JSON encoder takes it: the commit fails
        results = await asyncio.gather(
            intake.admit(row(bad, "t-bad", unstorable), 100, 10),
            intake.admit(row(good, "t-good", {"prompt": "x"}), 100, 10),
            return_exceptions=True)
        assert isinstance(results[0], Exception) and results[1] is None, results
        rows = await sessions.write(lambda c: c.exec_driver_sql(
            "SELECT id FROM tasks").fetchall())
        assert [r[0] for r in rows] == ["t-good"]
        await intake.aclose()
    finally:
        await sessions.dispose()


# --- 3. text the database would refuse is "not found" or a 400 ----------------------------

def test_nul_bytes_never_reach_the_database(gw: GatewayServer, token: str) -> None:
    for query in ({"action": "retrieve", "id": "a\u0000"},
                  {"action": "retrieve", "trace_id": "t\u0000"}):
        r = call(gw, token, TASKS, query)
        assert (r.status_code, r.json()) == (200, {}), r.text
    for field in ("ids", "trace_ids"):
        r = call(gw, token, TASKS, {"action": "retrieve_batch", field: ["a\u0000", "b"]})
        assert r.status_code == 200 and r.json()["count"] == 0, r.text
    r = httpx.get(gw.url + "/v1/tasks/%00", headers={"authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()) == (200, {})
    for method, path in (("GET", "/admin/credentials/%00"),
                         ("GET", "/admin/credentials/%00/usage"),
                         ("DELETE", "/admin/credentials/%00"),
                         ("POST", "/admin/credentials/%00/disable")):
        assert admin(gw, method, path).status_code == 404, path
    assert admin(gw, "PATCH", "/admin/credentials/%00", {"name": "x"}).status_code == 404
    assert admin(gw, "POST", "/admin/credentials/%00/topup", {"credits": 1}).status_code == 404
    assert admin(gw, "POST", "/admin/credentials", {"name": "a\u0000b"}).status_code == 400
    r = call(gw, token, GEN, {"model": "nano-banana", "prompt": "x",
                              "callback_url": "https://example.com/\u0000"})
    assert r.status_code == 400 and "callback_url" in r.text


# --- 5. a client that leaves mid-body is its own doing --------------------------------------

def test_a_client_leaving_mid_body_is_not_a_server_error(gw: GatewayServer, token: str
                                                         ) -> None:
    marker = "gone-" + str(time.time())
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(f"POST {GEN}?m={marker} HTTP/1.1\r\nhost: x\r\ncontent-type: "
                  f"application/json\r\nauthorization: Bearer {token}\r\n"
                  "content-length: 5000\r\n\r\n{\"model\": ".encode())
        time.sleep(0.3)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "client_disconnected" not in gw.log():
        time.sleep(0.1)
    lines = [json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    gone = [x for x in lines if x.get("event") == "client_disconnected"]
    assert gone and gone[-1]["level"] == "info"
    assert not [x for x in lines if x.get("event") == "internal_error"]
    assert "Traceback" not in gw.log()
    metrics = httpx.get(gw.url + "/metrics").text
    assert 'status="499"' in metrics
    assert not [m for m in metrics.splitlines() if 'status="500"' in m and GEN in m]


# --- 6. the sandbox renders what the real upstream would return -----------------------------

def _size_of(r: httpx.Response) -> tuple[int, int]:
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(httpx.get(r.json()["data"][0]["url"]).content)).size


@pytest.mark.parametrize(("model", "size", "expected"), [
    ("nano-banana", "8192x8192", (1024, 1024)),
    ("nano-banana", "1792x1024", (1344, 768)),
    ("nano-banana", "1536x1024", (1248, 832)),
    ("nano-banana-2", "2048x2048", (2048, 2048)),  # 2K
    ("nano-banana-pro", "1000x1000", (1024, 1024)),
])
def test_sandbox_sizes_are_gemini_sizes(gw: GatewayServer, token: str, model: str, size: str,
                                        expected: tuple[int, int]) -> None:
    assert _size_of(call(gw, token, GEN, {"model": model, "prompt": "s", "size": size})
                    ) == expected


def test_huge_sandbox_requests_stay_small(gw: GatewayServer, token: str) -> None:
    body = {"model": "nano-banana", "prompt": "big", "size": "8192x8192", "n": 4,
            "output_format": "webp"}
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: call(gw, token, GEN, body), range(3)))
    assert all(_size_of(r) == (1024, 1024) for r in answers)
    assert gw.proc is not None
    status = Path(f"/proc/{gw.proc.pid}/status").read_text()
    peak_kb = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    assert peak_kb < 1_000_000, peak_kb


# --- 7. /files serves nothing outside the store ----------------------------------------------

def test_symlinks_out_of_the_store_are_not_followed(gw: GatewayServer, token: str,
                                                    tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    files = gw.data_dir / "files"
    (files / "leak.png").symlink_to(secret)
    (files / "elsewhere").symlink_to(outside, target_is_directory=True)
    for key in ("leak.png", "elsewhere/secret.png"):
        for method in ("GET", "HEAD"):
            r = httpx.request(method, f"{gw.url}/files/{key}")
            assert r.status_code == 404, (method, key)
    r = call(gw, token, GEN, {"model": "nano-banana", "prompt": "mine", "size": "256x256"})
    assert httpx.get(r.json()["data"][0]["url"]).status_code == 200


# --- 8. nothing a client sent comes back at length ------------------------------------------

def test_echoed_values_are_cut_short(gw: GatewayServer, token: str) -> None:
    r = call(gw, token, TASKS, {"action": "A" * 1_000_000})
    assert r.status_code == 400 and len(r.content) < 1500, len(r.content)
    long = "x" * 6000
    auth = {"authorization": f"Bearer {token}"}
    for response in (httpx.get(f"{gw.url}/v1/models/{long}", headers=auth),
                     httpx.get(f"{gw.url}/{long}"),
                     httpx.get(f"{gw.url}/files/{long}.png"),
                     admin(gw, "GET", f"/admin/credentials/{long}"),
                     admin(gw, "POST", "/admin/credentials", {long: 1}),
                     call(gw, token, GEN, {"model": long, "prompt": "x"}),
                     call(gw, token, GEN, {"model": "nano-banana", "prompt": "x",
                                           "async": long})):
        assert 400 <= response.status_code < 500
        assert len(response.content) < 1500, (response.request.url, len(response.content))

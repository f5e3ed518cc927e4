"""The admin API refuses every malformed input with 400, bounds credits, and deletes softly."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import backend as backends
from tests.support import db
from tests.support.server import GatewayServer

GEN = "/openai/images/generations"
ADMIN = {"authorization": "Bearer adm-inputs-1-0123456789abcdef"}
MAX = 1_000_000_000


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    backends.current = backend
    server = GatewayServer(tmp_path_factory.mktemp(f"admin-{backend}") / "d", "--sandbox",
                           env={"IMAGEGATE_ADMIN_KEY": "adm-inputs-1-0123456789abcdef"}).start()
    yield server
    server.stop()


def call(gw: GatewayServer, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, gw.url + "/admin/credentials" + path, headers=ADMIN,
                         json=body, timeout=30)


def new(gw: GatewayServer, **body: Any) -> dict[str, Any]:
    r = call(gw, "POST", "", {"name": "x", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_request" and field in error["message"], error


@pytest.mark.parametrize(("body", "field"), [
    ({"name": None}, "name"), ({"name": ""}, "name"), ({"name": 5}, "name"),
    ({"application": None}, "application"), ({"scopes": None}, "scopes"),
    ({"scopes": []}, "scopes"), ({"scopes": "openai-images"}, "scopes"),
    ({"scopes": ["openai-images", "suno-audio"]}, "suno-audio"),
    ({"disabled": "yes"}, "disabled"), ({"disabled": None}, "disabled"),
    ({"expires_at": "soon"}, "expires_at"), ({"expires_at": True}, "expires_at"),
    ({"expires_at": -1}, "expires_at"), ({"rate_limits": {"rps": 0}}, "rate_limits.rps"),
    ({"rate_limits": {"rps": 1.5}}, "rate_limits.rps"),
    ({"rate_limits": {"burst": 1}}, "rate_limits"), ({"rate_limits": []}, "rate_limits"),
    ({"credits": 5}, "credits"), ({}, "nothing to change"),
])
def test_patch_refuses_bad_fields_and_changes_nothing(gw: GatewayServer, body: dict[str, Any],
                                                       field: str) -> None:
    cred = new(gw, name="keep", scopes=["openai-images"], rate_limits={"rps": 7})
    refused(call(gw, "PATCH", f"/{cred['id']}", body), field)
    after = call(gw, "GET", f"/{cred['id']}").json()
    assert (after["name"], after["scopes"], after["disabled"], after["rate_limits"]) == (
        "keep", ["openai-images"], False, {"rps": 7})


@pytest.mark.parametrize(("body", "field"), [
    ({"name": None}, "name"), ({"scopes": None}, "scopes"), ({"scopes": ["nope"]}, "nope"),
    ({"credits": None}, "credits"), ({"credits": "5"}, "credits"),
    ({"credits": True}, "credits"), ({"credits": -1}, "credits"),
    ({"credits": 1e13}, "credits"), ({"credits": MAX + 0.5}, "credits"),
    ({"credits": 0.0000001}, "credits"), ({"credits": 1.0000001}, "credits"),
    ({"expires_at": "x"}, "expires_at"), ({"rate_limits": {"concurrency": -2}}, "concurrency"),
    ({"token": "ig-mine"}, "token"),
])
def test_create_refuses_bad_fields(gw: GatewayServer, body: dict[str, Any], field: str) -> None:
    before = len(call(gw, "GET", "?include_deleted=true").json()["items"])
    refused(call(gw, "POST", "", body), field)
    assert len(call(gw, "GET", "?include_deleted=true").json()["items"]) == before


def test_credits_are_capped_for_each_amount_and_for_the_balance(gw: GatewayServer) -> None:
    cred = new(gw, credits=MAX)
    assert cred["credits"] == MAX
    for amount in (0.000001, 1e300, float(2**63)):
        refused(call(gw, "POST", f"/{cred['id']}/topup", {"credits": amount}), "credits")
    for body in ({}, {"credits": None}, {"credits": "1"}, {"credits": 0}, {"credits": 1e-7}):
        refused(call(gw, "POST", f"/{cred['id']}/topup", body), "credits")
    usage = call(gw, "GET", f"/{cred['id']}/usage")
    assert usage.status_code == 200, usage.text
    assert usage.json()["balance"] == usage.json()["ledger_balance"] == MAX
    (balance,), = db.query(gw, "SELECT balance FROM credentials WHERE id = ?", cred["id"])
    assert balance == MAX * 1_000_000 and isinstance(balance, int)

    exact = new(gw, credits=0.000001)
    r = call(gw, "POST", f"/{exact['id']}/topup", {"credits": 2.000001})
    assert r.status_code == 200 and r.json()["credits"] == 2.000002


def test_concurrent_top_ups_cannot_pass_the_cap_together(gw: GatewayServer) -> None:
    """The cap is part of the UPDATE's condition: three of ten 300M top-ups fit in 1G."""
    cred = new(gw)

    async def top_ups() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.url, headers=ADMIN, timeout=60) as c:
            return await asyncio.gather(*(
                c.post(f"/admin/credentials/{cred['id']}/topup", json={"credits": 3e8})
                for _ in range(10)))

    codes = Counter(r.status_code for r in asyncio.run(top_ups()))
    assert codes == {200: 3, 400: 7}, codes
    usage = call(gw, "GET", f"/{cred['id']}/usage").json()
    assert usage["balance"] == usage["ledger_balance"] == 9e8


def test_delete_is_soft_and_final(gw: GatewayServer) -> None:
    cred = new(gw, credits=1)
    token, cid = cred["token"], cred["id"]
    auth = {"authorization": f"Bearer {token}"}
    assert httpx.post(gw.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                      headers=auth).status_code == 200
    assert call(gw, "DELETE", f"/{cid}").json() == {"deleted": cid}

    r = httpx.post(gw.url + GEN, json={"model": "nano-banana", "prompt": "x"}, headers=auth)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    r = httpx.get(gw.url + "/api/credentials/me", headers=auth)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    assert cid not in [c["id"] for c in call(gw, "GET", "").json()["items"]]
    listed = {c["id"]: c for c in call(gw, "GET", "?include_deleted=true").json()["items"]}
    assert listed[cid]["deleted_at"] is not None
    for method, path, body in (("GET", f"/{cid}", None), ("DELETE", f"/{cid}", None),
                               ("POST", f"/{cid}/enable", None),
                               ("POST", f"/{cid}/topup", {"credits": 1}),
                               ("PATCH", f"/{cid}", {"name": "back"})):
        r = call(gw, method, path, body)
        assert r.status_code == 404, (method, path, r.text)

    kinds = db.query(gw, "SELECT kind FROM ledger WHERE credential_id = ? ORDER BY id", cid)
    assert kinds == [("grant",), ("reserve",), ("settle",)]
    assert db.query(gw, "SELECT count(*) FROM tasks WHERE credential_id = ?", cid) == [(1,)]
    usage = call(gw, "GET", f"/{cid}/usage").json()
    assert usage["balance"] == usage["ledger_balance"] == pytest.approx(0.86)
    assert len(usage["recent_tasks"]) == 1

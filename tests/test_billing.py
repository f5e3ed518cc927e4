"""Credits that stay exact under concurrency and failure; credential states and admin API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support import db
from tests.support.server import GatewayServer, cli

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
GEN = "/openai/images/generations"
ADMIN = {"IMAGEGATE_ADMIN_KEY": "adm-secret-123-0123456789ab"}
AUTH_ADMIN = {"authorization": "Bearer adm-secret-123-0123456789ab"}


def ledger_of(server: GatewayServer, cred_id: str) -> list[tuple[str | None, str, int]]:
    return [tuple(r) for r in db.query(server, "SELECT task_id, kind, amount FROM ledger "
                                               "WHERE credential_id = ? ORDER BY id", cred_id)]


@pytest.mark.parametrize("processes", [1, 2])
def test_200_concurrent_requests_against_50_requests_of_credit(tmp_path: Path, processes: int
                                                                ) -> None:
    """With two processes each has its own in-process writer and each gets enough requests
    to spend the whole balance alone: only the database's conditional UPDATE can keep them
    from both spending the same credits (which one wins the race does not matter)."""
    data = tmp_path / "d"
    servers = [GatewayServer(data, "--sandbox", env=ADMIN).start() for _ in range(processes)]
    try:
        server = servers[0]
        r = httpx.post(server.url + "/admin/credentials", headers=AUTH_ADMIN, json={
            "name": "exact", "credits": 7, "rate_limits": {"rps": 10000, "concurrency": 1000}})
        assert r.status_code == 201, r.text
        token, cred_id = r.json()["token"], r.json()["id"]

        async def storm() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(limits=limits, timeout=120,
                                         headers={"authorization": f"Bearer {token}"}) as c:
                return await asyncio.gather(*(
                    c.post(servers[i % processes].url + GEN,
                           json={"model": "nano-banana", "prompt": f"p{i}"})
                    for i in range(200)))

        responses = asyncio.run(storm())
        outcome = Counter((r.status_code, r.json().get("error", {}).get("code"))
                          for r in responses)
        assert outcome == {(200, None): 50, (403, "used_up"): 150}, outcome
        refused = next(r for r in responses if r.status_code == 403)
        assert "costs 0.14" in refused.json()["error"]["message"]
        assert db.query(server, "SELECT balance FROM credentials WHERE id = ?", cred_id) == [
            (0,)]
        ledger = ledger_of(server, cred_id)
        assert sum(amount for _, _, amount in ledger) == 0
        per_task: dict[str, list[str]] = {}
        for task_id, kind, _ in ledger:
            if task_id:
                per_task.setdefault(task_id, []).append(kind)
        assert len(per_task) == 50
        assert all(kinds == ["reserve", "settle"] for kinds in per_task.values())
        me = httpx.get(server.url + "/api/credentials/me",
                       headers={"authorization": f"Bearer {token}"}).json()
        assert me["balance"] == 0 and me["ledger_balance"] == 0
        assert me["by_model"]["nano-banana"]["succeeded"] == 50
        assert me["by_model"]["nano-banana"]["credits"] == 7.0
        assert len(me["recent_tasks"]) == 10
    finally:
        for one in servers:
            one.stop()


def test_upstream_failure_refunds_in_full(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox") as server:
        token = server.token(credits=1, name="refund")
        (server.data_dir / "files").mkdir(exist_ok=True)
        (server.data_dir / "files" / "nano-banana").write_text("in the way")
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x", "n": 3},
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 500
        (cred_id, balance), = db.query(server, "SELECT id, balance FROM credentials "
                                               "WHERE name = 'refund'")
        assert balance == 1_000_000
        kinds = [(k, a) for t, k, a in ledger_of(server, cred_id) if t]
        assert kinds == [("reserve", -420_000), ("release", 420_000)]


def test_admin_api_and_credential_states(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox", env=ADMIN) as server:
        def gen(token: str) -> httpx.Response:
            return httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                              headers={"authorization": f"Bearer {token}"})

        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-admin-key": "nope"}):
            r = httpx.get(server.url + "/admin/credentials", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
        created = httpx.post(server.url + "/admin/credentials", headers=AUTH_ADMIN,
                             json={"name": "alice", "credits": 1}).json()
        token, cid = created["token"], created["id"]
        assert "token_hash" not in created and created["credits"] == 1
        assert gen(token).status_code == 200  # now cached by the gateway
        r = httpx.post(f"{server.url}/admin/credentials/{cid}/disable", headers=AUTH_ADMIN)
        assert r.json()["disabled"] is True
        assert gen(token).json()["error"]["code"] == "disabled"  # no stale cache
        httpx.post(f"{server.url}/admin/credentials/{cid}/enable", headers=AUTH_ADMIN)
        assert gen(token).status_code == 200
        # only openai-images exists yet, so the API refuses other scopes: a credential
        # from elsewhere (a newer version, another API) is made in the database
        refused = httpx.patch(f"{server.url}/admin/credentials/{cid}", headers=AUTH_ADMIN,
                              json={"scopes": ["suno-audio"]})
        assert refused.status_code == 400 and "suno-audio" in refused.json()["error"]["message"]
        db.execute(server, "UPDATE credentials SET scopes = ? WHERE id = ?", '["suno-audio"]',
                   cid)
        httpx.patch(f"{server.url}/admin/credentials/{cid}", headers=AUTH_ADMIN,
                    json={"name": "alice2"})  # drops the cached copy
        assert gen(token).json()["error"]["code"] == "token_mismatched"
        httpx.patch(f"{server.url}/admin/credentials/{cid}", headers=AUTH_ADMIN,
                    json={"scopes": ["openai-images"], "expires_at": time.time() - 1})
        r = gen(token)
        assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"
        httpx.patch(f"{server.url}/admin/credentials/{cid}", headers=AUTH_ADMIN,
                    json={"expires_at": None})
        r = httpx.post(f"{server.url}/admin/credentials/{cid}/topup", headers=AUTH_ADMIN,
                       json={"credits": 2.5})
        assert r.json()["credits"] == pytest.approx(1 - 0.28 + 2.5)
        bad = httpx.post(f"{server.url}/admin/credentials/{cid}/topup", headers=AUTH_ADMIN,
                         json={"credits": -5})
        assert bad.status_code == 400
        usage = httpx.get(f"{server.url}/admin/credentials/{cid}/usage", headers=AUTH_ADMIN)
        assert usage.json()["balance"] == usage.json()["ledger_balance"]
        listed = httpx.get(server.url + "/admin/credentials", headers=AUTH_ADMIN).json()
        assert cid in [c["id"] for c in listed["items"]]
        assert httpx.delete(f"{server.url}/admin/credentials/{cid}",
                            headers=AUTH_ADMIN).status_code == 200
        assert gen(token).json()["error"]["code"] == "invalid_token"
        missing = httpx.get(f"{server.url}/admin/credentials/{cid}", headers=AUTH_ADMIN)
        assert missing.status_code == 404


def test_admin_api_is_absent_without_a_key(sandbox: GatewayServer) -> None:
    r = httpx.get(sandbox.url + "/admin/credentials", headers=AUTH_ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "no_api"
    r = httpx.post(sandbox.url + "/api/credentials")
    assert r.status_code == 404  # self-service is off by default


def test_cli_credential_lifecycle(tmp_path: Path) -> None:
    """CLI changes reach a running gateway's credential cache at once through Redis."""
    data = tmp_path / "d"
    redis = {"IMAGEGATE_REDIS_URL": "redis://127.0.0.1:6379/0"}
    with GatewayServer(data, "--sandbox", env=redis) as server:
        out = cli("tokens", "create", "--name", "bob", "--credits", "1", "--data-dir",
                  str(data), env=server.env).stdout
        token = out.strip().splitlines()[-1]
        prefix = token[:8]

        def gen() -> httpx.Response:
            return httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                              headers={"authorization": f"Bearer {token}"})

        assert cli("tokens", "disable", prefix, "--data-dir", str(data),
                   env=server.env).returncode == 0
        assert gen().json()["error"]["code"] == "disabled"
        cli("tokens", "enable", prefix, "--data-dir", str(data), env=server.env)
        time.sleep(0.3)  # the announcement travels through Redis
        assert gen().status_code == 200
        top = cli("tokens", "topup", prefix, "4", "--data-dir", str(data), env=server.env)
        assert "balance 4.86" in top.stdout
        usage = cli("tokens", "usage", prefix, "--data-dir", str(data), env=server.env).stdout
        assert '"balance": 4.86' in usage and '"nano-banana"' in usage
        missing = cli("tokens", "topup", "nonexistent", "1", "--data-dir", str(data),
                      env=server.env, check=False)
        assert missing.returncode == 2 and "no credential" in missing.stderr


def test_cli_changes_reach_a_gateway_within_a_second_without_redis(tmp_path: Path) -> None:
    """No Redis: the revision the CLI bumps is what the gateway notices. A long cache TTL
    makes sure expiry cannot be what refreshed it."""
    data = tmp_path / "d"
    with GatewayServer(data, "--sandbox",
                       env={"IMAGEGATE_CREDENTIAL_CACHE_SECONDS": "300"}) as server:
        out = cli("tokens", "create", "--name", "carol", "--credits", "1", "--data-dir",
                  str(data), env=server.env).stdout
        token = out.strip().splitlines()[-1]

        def gen() -> httpx.Response:
            return httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                              headers={"authorization": f"Bearer {token}"})

        def tokens(*args: str) -> None:
            assert cli("tokens", *args, token[:8], "--data-dir", str(data),
                       env=server.env).returncode == 0

        assert gen().status_code == 200  # cached from here on
        tokens("disable")
        time.sleep(1.5)
        r = gen()
        assert r.status_code == 403 and r.json()["error"]["code"] == "disabled"
        tokens("enable")
        time.sleep(1.5)
        assert gen().status_code == 200
        tokens("delete")
        time.sleep(1.5)
        r = gen()
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
        listing = cli("tokens", "list", "--data-dir", str(data), env=server.env).stdout
        assert "carol" not in listing
        usage = cli("tokens", "usage", token[:8], "--data-dir", str(data), env=server.env)
        assert '"ledger_balance": 0.72' in usage.stdout  # the ledger outlives the token


def test_self_service_issues_free_credits_and_is_limited(tmp_path: Path) -> None:
    env = {"IMAGEGATE_SELF_SERVICE": "true", "IMAGEGATE_FREE_CREDITS": "0.5",
           "IMAGEGATE_SELF_SERVICE_LIMIT": "2/hour"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        first = httpx.post(server.url + "/api/credentials")
        assert first.status_code == 201 and first.json()["credits"] == 0.5
        token = first.json()["token"]
        assert httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                          headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.post(server.url + "/api/credentials").status_code == 201
        third = httpx.post(server.url + "/api/credentials")
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1

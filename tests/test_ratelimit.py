"""429 with Retry-After: request rate, in-flight generations, polling; shared via Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.server import GatewayServer, free_port

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
GEN = "/openai/images/generations"
ADMIN = {"IMAGEGATE_ADMIN_KEY": "adm-1"}


def make_credential(server: GatewayServer, **limits: int) -> str:
    r = httpx.post(server.url + "/admin/credentials", headers={"authorization": "Bearer adm-1"},
                   json={"name": "limited", "credits": 100, "rate_limits": limits})
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def burst(urls: list[str], token: str, n: int, path: str = "/v1/models",
                body: dict[str, object] | None = None) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {token}"},
                                 limits=httpx.Limits(max_connections=100)) as c:
        calls = [c.post(urls[i % len(urls)] + path, json=body) if body is not None
                 else c.get(urls[i % len(urls)] + path) for i in range(n)]
        return await asyncio.gather(*calls)


def check_429(r: httpx.Response) -> None:
    assert r.json()["error"]["code"] == "too_many_requests"
    assert int(r.headers["retry-after"]) >= 1


def test_requests_per_second(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox", env=ADMIN) as server:
        token = make_credential(server, rps=5)
        responses = asyncio.run(burst([server.url], token, 20))
        codes = Counter(r.status_code for r in responses)
        assert codes == {200: 5, 429: 15}, codes
        check_429(next(r for r in responses if r.status_code == 429))


def test_in_flight_generations(tmp_path: Path) -> None:
    env = {**ADMIN, "IMAGEGATE_SANDBOX_LATENCY": "1.5"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        token = make_credential(server, concurrency=2, rps=1000)
        responses = asyncio.run(burst([server.url], token, 5, GEN,
                                      {"model": "nano-banana", "prompt": "x"}))
        codes = Counter(r.status_code for r in responses)
        assert codes == {200: 2, 429: 3}, codes
        refused = next(r for r in responses if r.status_code == 429)
        check_429(refused)
        assert "in flight" in refused.json()["error"]["message"]


def test_polling_has_its_own_allowance(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox", env=ADMIN) as server:
        token = make_credential(server, poll_rps=3, rps=1000)
        responses = asyncio.run(burst([server.url], token, 10, "/openai/tasks",
                                      {"action": "retrieve", "id": "x"}))
        assert Counter(r.status_code for r in responses) == {200: 3, 429: 7}
        check_429(next(r for r in responses if r.status_code == 429))
        # generation requests are not slowed by the polling
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                       headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200


def test_limit_shared_by_two_processes_through_redis(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {**ADMIN, "IMAGEGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
           "IMAGEGATE_RATE_LIMIT_PREFIX": f"test-{uuid.uuid4().hex[:8]}"}
    with GatewayServer(data, "--sandbox", env=env) as one, \
            GatewayServer(data, "--sandbox", env=env) as two:
        token = make_credential(one, rps=10)
        responses = asyncio.run(burst([one.url, two.url], token, 40))
        codes = Counter(r.status_code for r in responses)
        assert codes[200] == 10 and codes[429] == 30, codes  # one limit for both nodes
        refused_by = Counter(str(r.url).split("/v1")[0] for r in responses
                             if r.status_code == 429)
        assert len(refused_by) == 2  # each node refused what the other had used up


def test_redis_down_fails_open(tmp_path: Path) -> None:
    env = {**ADMIN, "IMAGEGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        token = make_credential(server, rps=5)
        responses = asyncio.run(burst([server.url], token, 8))
        assert {r.status_code for r in responses} == {200}

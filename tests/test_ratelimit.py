"""429 with Retry-After: request rate, in-flight generations, polling; shared via Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.server import GatewayServer, free_port

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
GEN = "/openai/images/generations"
ADMIN = {"IMAGEGATE_ADMIN_KEY": "adm-1-0123456789abcdefghij"}
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN['IMAGEGATE_ADMIN_KEY']}"}


def make_credential(server: GatewayServer, **limits: int) -> str:
    r = httpx.post(server.url + "/admin/credentials", headers=ADMIN_AUTH,
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


async def hammer(urls: list[str], token: str, seconds: float, path: str = "/v1/models",
                 body: dict[str, object] | None = None) -> tuple[list[httpx.Response], float]:
    """Keep every node far over the limit for ``seconds``: the responses and the time taken.

    A sliding window admits at most the limit in each one-second bucket, so however the
    calls fall across buckets, at most ``limit * (took + 2)`` get through. Limits kept per
    node let about ``2 * limit * took`` through, so over six seconds the bound tells them
    apart (an exact count would depend on where the burst meets a bucket boundary)."""
    responses: list[httpx.Response] = []
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=60, headers={"authorization": f"Bearer {token}"}
                                 ) as c:
        async def loop(url: str) -> None:
            while time.monotonic() < began + seconds:
                responses.append(await (c.post(url + path, json=body) if body is not None
                                        else c.get(url + path)))

        await asyncio.gather(*(loop(urls[i % len(urls)]) for i in range(8)))
    return responses, time.monotonic() - began


def within_limit(responses: list[httpx.Response], took: float, limit: int) -> Counter[int]:
    codes = Counter(r.status_code for r in responses)
    assert set(codes) == {200, 429} and codes[429] > codes[200], codes  # saturated
    assert limit <= codes[200] <= limit * (took + 2), (codes, took)
    check_429(next(r for r in responses if r.status_code == 429))
    return codes


def check_429(r: httpx.Response) -> None:
    assert r.json()["error"]["code"] == "too_many_requests"
    assert int(r.headers["retry-after"]) >= 1


def test_requests_per_second(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox", env=ADMIN) as server:
        token = make_credential(server, rps=5)
        within_limit(*asyncio.run(hammer([server.url], token, 2)), limit=5)


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
        within_limit(*asyncio.run(hammer([server.url], token, 2, "/openai/tasks",
                                         {"action": "retrieve", "id": "x"})), limit=3)
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
        token = make_credential(one, rps=5)
        responses, took = asyncio.run(hammer([one.url, two.url], token, 6))
        within_limit(responses, took, limit=5)  # one limit for both nodes
        served_by = Counter(str(r.url).split("/v1")[0] for r in responses
                            if r.status_code == 200)
        refused_by = Counter(str(r.url).split("/v1")[0] for r in responses
                             if r.status_code == 429)
        assert len(served_by) == len(refused_by) == 2, (served_by, refused_by)


def test_concurrency_limit_shared_by_two_processes(tmp_path: Path) -> None:
    """In-flight generations are counted in the shared database, so two nodes (with Redis
    for the request rate) admit two between them, not two each."""
    data = tmp_path / "d"
    env = {**ADMIN, "IMAGEGATE_SANDBOX_LATENCY": "3",
           "IMAGEGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
           "IMAGEGATE_RATE_LIMIT_PREFIX": f"test-{uuid.uuid4().hex[:8]}"}
    with GatewayServer(data, "--sandbox", env=env) as one, \
            GatewayServer(data, "--sandbox", env=env) as two:
        token = make_credential(one, concurrency=2, rps=1000)
        responses = asyncio.run(burst([one.url, two.url], token, 8, GEN,
                                      {"model": "nano-banana", "prompt": "x"}))
        codes = Counter(r.status_code for r in responses)
        assert codes == {200: 2, 429: 6}, codes
        refused = next(r for r in responses if r.status_code == 429)
        check_429(refused)
        assert "in flight" in refused.json()["error"]["message"]


def test_redis_down_fails_open(tmp_path: Path) -> None:
    env = {**ADMIN, "IMAGEGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        token = make_credential(server, rps=5)
        responses = asyncio.run(burst([server.url], token, 8))
        assert {r.status_code for r in responses} == {200}

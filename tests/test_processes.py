"""`serve --processes 2` and `worker --processes 2`: everything one process guarantees holds
across the processes of a node, without Redis. Each test checks, from the logs' `pid`, that
both processes took part, so a guarantee kept by one process alone cannot pass for both."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import db
from tests.support.server import GatewayServer, cli, free_port

GEN = "/openai/images/generations"
ADMIN_KEY = "adm-processes-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
NEW_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)  # a connection per request


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition (0 when absent); label values may hold
    braces (routes do)."""
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.rsplit(" ", 1)[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def log_lines(server: GatewayServer, since: int = 0) -> list[dict[str, Any]]:
    """The JSON lines of the server's log, from character ``since`` on."""
    return [json.loads(line) for line in server.log()[since:].splitlines()
            if line.startswith("{")]


def pids(server: GatewayServer, event: str = "request", since: int = 0, **match: Any
         ) -> Counter[int]:
    """Which processes logged ``event`` (with these fields), how many times each."""
    return Counter(line["pid"] for line in log_lines(server, since)
                   if line.get("event") == event
                   and all(line.get(k) == v for k, v in match.items()))


def children(server: GatewayServer) -> set[int]:
    assert server.proc is not None
    pid = server.proc.pid
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
            if int(fields[1]) == pid and b"spawn_main" in cmdline \
                    and b"resource_tracker" not in cmdline:
                found.add(int(entry.name))
    return found


def credential(server: GatewayServer, **limits: int) -> tuple[str, str]:
    r = httpx.post(server.url + "/admin/credentials", headers=ADMIN, json={
        "name": "limited", "credits": 1000, "rate_limits": limits})
    assert r.status_code == 201, r.text
    return str(r.json()["token"]), str(r.json()["id"])


async def fresh_connections(url: str, token: str, n: int, path: str = "/v1/models"
                            ) -> list[httpx.Response]:
    """``n`` requests at once, each on a connection of its own (spread over the processes)."""
    async with httpx.AsyncClient(timeout=60, limits=NEW_CONNECTIONS,
                                 headers={"authorization": f"Bearer {token}"}) as c:
        return await asyncio.gather(*(c.get(url + path) for _ in range(n)))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = {"IMAGEGATE_ADMIN_KEY": ADMIN_KEY, "IMAGEGATE_POLL_INTERVAL": "0.2",
           "IMAGEGATE_WORKERS": "2"}
    server = GatewayServer(tmp_path_factory.mktemp("node"), "--sandbox", "--processes", "2",
                           env=env)
    server.start(timeout=60)
    yield server
    server.stop()


def test_the_sandbox_demo_token_is_created_once_and_works_everywhere(
        node: GatewayServer) -> None:
    assert len(children(node)) == 2
    names = db.query(node.data_dir, "SELECT name FROM credentials")
    assert names == [("demo",)]
    # a loaded machine can let one process accept a whole burst: send bursts until both served
    for _ in range(20):
        responses = asyncio.run(fresh_connections(node.url, node.demo_token(), 24))
        assert {r.status_code for r in responses} == {200}
        if len(pids(node, path="/v1/models")) == 2:
            break
    assert len(pids(node, path="/v1/models")) == 2


def test_one_request_rate_for_all_processes(node: GatewayServer) -> None:
    token, _ = credential(node, rps=10)
    mark = len(node.log())
    began = time.monotonic()
    codes: Counter[int] = Counter()

    async def hammer() -> None:
        async with httpx.AsyncClient(timeout=30, limits=NEW_CONNECTIONS,
                                     headers={"authorization": f"Bearer {token}"}) as c:
            async def loop() -> None:
                while time.monotonic() < began + 4:
                    codes[(await c.get(node.url + "/v1/models")).status_code] += 1

            await asyncio.gather(*(loop() for _ in range(8)))

    asyncio.run(hammer())
    took = time.monotonic() - began
    assert set(codes) == {200, 429} and codes[429] > codes[200], codes  # saturated
    # A sliding window admits the limit per second, plus at most one window's worth (a
    # limit kept per process lets about twice as many through). How close to the limit
    # it gets depends on how steadily a loaded machine sends: bench.ratelimit measures
    # that (within 2%); here the bound below only catches a limiter that admits far less.
    assert 10 * took * 0.5 <= codes[200] <= 10 * (took + 1) * 1.1, (codes, took)
    served = pids(node, since=mark, path="/v1/models", status=200)
    refused = pids(node, since=mark, path="/v1/models", status=429)
    assert len(served) == len(refused) == 2, (served, refused)


def test_a_credential_change_reaches_every_process_at_once(node: GatewayServer) -> None:
    token, cred_id = credential(node)
    # both processes cache the credential (and read the change counter) just now...
    warm = asyncio.run(fresh_connections(node.url, token, 24))
    assert {r.status_code for r in warm} == {200}
    # ...so without a signal between them, one would serve it for up to another second
    r = httpx.post(node.url + f"/admin/credentials/{cred_id}/disable", headers=ADMIN)
    assert r.status_code == 200, r.text
    mark = len(node.log())
    after = asyncio.run(fresh_connections(node.url, token, 24))
    assert [r.status_code for r in after] == [403] * 24
    assert {r.json()["error"]["code"] for r in after} == {"disabled"}
    assert len(pids(node, since=mark, path="/v1/models", status=403)) == 2
    httpx.post(node.url + f"/admin/credentials/{cred_id}/enable", headers=ADMIN)
    again = asyncio.run(fresh_connections(node.url, token, 8))
    assert {r.status_code for r in again} == {200}


def test_metrics_count_the_whole_node(node: GatewayServer) -> None:
    token = node.demo_token()
    responses = asyncio.run(fresh_connections(node.url, token, 20, "/v1/models/nano-banana"))
    assert {r.status_code for r in responses} == {200}
    assert len(pids(node, path="/v1/models/nano-banana")) == 2
    key = {"route": "/v1/models/{name}", "model": "", "status": "200"}
    scrapes = [sample(httpx.get(node.url + "/metrics").text, "imagegate_requests_total",
                      **key) for _ in range(8)]  # a new connection each: any process answers
    assert scrapes == [20.0] * 8
    text = httpx.get(node.url + "/metrics").text
    assert sample(text, "imagegate_request_duration_seconds_count",
                  route="/v1/models/{name}") == 20.0
    assert "imagegate_queue_depth" in text


def test_sqlite_writers_of_both_processes_under_load(node: GatewayServer) -> None:
    """Async submissions (grouped admissions), sync generations, task claims and settles,
    polls, all at once from both processes on one SQLite file: no write is refused."""
    token = node.token(credits=100000, name="loaded")
    auth = {"authorization": f"Bearer {token}"}
    results: Counter[str] = Counter()
    task_ids: list[str] = []

    async def load() -> None:
        async with httpx.AsyncClient(timeout=60, headers=auth,
                                     limits=httpx.Limits(max_connections=24)) as c:
            async def client(requests: int, body: dict[str, Any] | None) -> None:
                for _ in range(requests):
                    if body is None:
                        r = await c.post(node.url + "/openai/tasks", json={
                            "action": "retrieve", "id": task_ids[-1] if task_ids else "x"})
                        results[f"poll {r.status_code}"] += 1
                    else:
                        r = await c.post(node.url + GEN, json=body)
                        results[f"{GEN} {r.status_code}"] += 1
                        if r.status_code == 200:
                            task_ids.append(r.json()["task_id"])

            async_body = {"model": "nano-banana", "prompt": "load", "async": True}
            sync_body = {"model": "nano-banana", "prompt": "load"}
            await asyncio.gather(*[client(15, async_body) for _ in range(12)],
                                 *[client(5, sync_body) for _ in range(6)],
                                 *[client(20, None) for _ in range(2)])

    asyncio.run(load())
    assert results == {f"{GEN} 200": 12 * 15 + 6 * 5, "poll 200": 2 * 20}, results
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = db.query(node.data_dir, "SELECT count(*) FROM tasks WHERE status IN "
                        "('queued', 'running')")[0][0]
        if left == 0:
            break
        time.sleep(0.2)
    statuses = dict(db.query(node.data_dir, "SELECT status, count(*) FROM tasks t JOIN "
                             "credentials c ON c.id = t.credential_id WHERE c.name = 'loaded' "
                             "GROUP BY status"))
    assert statuses == {"succeeded": len(task_ids)}, statuses
    assert len(pids(node, "task_succeeded")) == 2
    balance, ledger = db.query(node.data_dir, "SELECT c.balance, (SELECT sum(amount) FROM "
                               "ledger l WHERE l.credential_id = c.id) FROM credentials c "
                               "WHERE c.name = 'loaded'")[0]
    assert balance == ledger
    log = node.log()
    for trouble in ("database is locked", "intake_failed", "claim_failed", "internal_error",
                    "Traceback"):
        assert trouble not in log, trouble
    assert len(pids(node, path=GEN, credential="loaded")) == 2


def test_a_second_node_on_the_same_port_is_refused(node: GatewayServer,
                                                  tmp_path: Path) -> None:
    """Each process listens with SO_REUSEPORT, which would let a second node started by
    mistake share the port and half the traffic."""
    out = cli("serve", "--sandbox", "--processes", "2", "--port", str(node.port),
              "--data-dir", str(tmp_path / "d"), check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert (f"cannot listen on 127.0.0.1:{node.port}: in use by another imagegate node"
            in out.stderr)
    assert not (tmp_path / "d").exists()  # refused before touching anything


def test_a_process_that_dies_is_replaced(node: GatewayServer) -> None:
    before = children(node)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        replaced = [line["pid"] for line in log_lines(node)
                    if line.get("event") == "process_replaced"]
        if replaced:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no replacement for {victim}:\n{node.log()[-3000:]}")
    assert children(node) == before - {victim} | {replaced[0]}
    assert any(line.get("event") == "process_died" and line.get("pid") == victim
               for line in log_lines(node))
    responses = asyncio.run(fresh_connections(node.url, node.demo_token(), 24))
    assert {r.status_code for r in responses} == {200}
    assert pids(node, path="/v1/models")[replaced[0]] > 0


GRACE = 5.0  # two grace periods (10 s) stand out from a loaded machine's overhead


def _wait_running(gw: GatewayServer, count: int, owners: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = db.query(gw.data_dir, "SELECT lease_owner FROM tasks WHERE status = 'running'")
        if len(rows) >= count and len({owner for (owner,) in rows}) >= owners:
            return
        time.sleep(0.05)
    raise AssertionError(f"never saw {count} running tasks on {owners} processes")


def test_in_flight_limit_and_sigterm_across_processes(tmp_path: Path) -> None:
    """Generations in flight are counted for the credential, not per process; SIGTERM to
    the node stops both processes in one grace period: every waiting client is answered
    and nothing is charged, running async tasks go back to the queue."""
    env = {"IMAGEGATE_ADMIN_KEY": ADMIN_KEY, "IMAGEGATE_SANDBOX_LATENCY": "60",
           "IMAGEGATE_SHUTDOWN_GRACE": str(GRACE), "IMAGEGATE_WORKERS": "1",
           "IMAGEGATE_POLL_INTERVAL": "0.2"}
    gw = GatewayServer(tmp_path / "d", "--sandbox", "--processes", "2", env=env)
    gw.start(timeout=60)
    try:
        token, _ = credential(gw, concurrency=4)
        auth = {"authorization": f"Bearer {token}"}
        async_ids = []
        for i in range(2):  # one worker per process: one task each
            r = httpx.post(gw.url + GEN, headers=auth, timeout=30,
                           json={"model": "nano-banana", "prompt": f"async {i}", "async": True})
            async_ids.append(r.json()["task_id"])
        _wait_running(gw, 2, owners=2)
        answers: list[httpx.Response] = []

        def sync_request() -> None:
            with httpx.Client(timeout=60) as c:
                answers.append(c.post(gw.url + GEN, headers=auth,
                                      json={"model": "nano-banana", "prompt": "sync"}))

        clients = [threading.Thread(target=sync_request) for _ in range(8)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 30
        while len(answers) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        # 4 in flight for the credential: 2 async tasks and 2 of the 8 sync requests
        assert [r.status_code for r in answers] == [429] * 6, [r.text for r in answers]
        assert "in flight" in answers[0].json()["error"]["message"]
        _wait_running(gw, 4, owners=2)  # the async tasks run one in each process

        assert gw.proc is not None
        running = children(gw)
        assert len(running) == 2
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        gw.proc.wait(GRACE + 15)
        took = time.monotonic() - started
        for c in clients:
            c.join(30)
        stopped = answers[6:]
        assert [r.status_code for r in stopped] == [500, 500], [r.text for r in stopped]
        for r in stopped:
            assert "shutting down" in r.json()["error"]["message"]
            assert "nothing was charged" in r.json()["error"]["message"]
        assert took < GRACE + 4, f"stopping took {took:.1f}s with a {GRACE:g}s grace period"
        # the ten requests (async, refused, stopped) came to both processes
        assert len(pids(gw, "request", path=GEN)) == 2
        stopping = [line for line in log_lines(gw) if line.get("event") == "processes_stopping"]
        assert len(stopping) == 1
        tasks = dict(db.query(gw.data_dir, "SELECT id, status FROM tasks"))
        assert [tasks[i] for i in async_ids] == ["queued", "queued"]  # handed back
        assert sorted(tasks.values()) == ["failed", "failed", "queued", "queued"]
        balance = db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = "
                           "'limited'")[0][0]
        assert balance == 1000_000_000 - 2 * 140_000  # only the queued tasks are held
        assert not [pid for pid in running if Path(f"/proc/{pid}").exists()]
    finally:
        gw.kill()


def test_worker_processes_share_the_queue_and_stop_together(tmp_path: Path) -> None:
    data = tmp_path / "d"
    env = {"IMAGEGATE_SANDBOX_LATENCY": "60", "IMAGEGATE_SHUTDOWN_GRACE": str(GRACE),
           "IMAGEGATE_POLL_INTERVAL": "0.2", "IMAGEGATE_LOG_JSON": "true"}
    with GatewayServer(data, "--sandbox", "--workers", "0", env=env) as api:
        token = api.token(credits=10)
        worker_log = (data / "worker.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagegate", "worker", "--sandbox", "--data-dir", str(data),
             "--processes", "2", "--concurrency", "1", "--public-base-url", api.url],
            stdout=worker_log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        try:
            ids = [httpx.post(api.url + GEN, headers={"authorization": f"Bearer {token}"},
                              json={"model": "nano-banana", "prompt": f"w{i}", "async": True}
                              ).json()["task_id"] for i in range(3)]
            _wait_running(api, 2, owners=2)  # one each: the third waits in the queue
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(GRACE + 15)
            took = time.monotonic() - started
            assert took < GRACE + 4, took
            statuses = dict(db.query(data, "SELECT id, status FROM tasks"))
            assert [statuses[i] for i in ids] == ["queued"] * 3
            attempts = db.query(data, "SELECT max(attempts) FROM tasks")[0][0]
            assert attempts == 0  # a hand-back does not count against the task
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            worker_log.close()
        lines = [json.loads(line) for line in (data / "worker.log").read_text().splitlines()
                 if line.startswith("{")]
        assert len({line["pid"] for line in lines if line.get("event") == "task_claimed"}) == 2
        assert sum(line.get("event") == "processes_stopping" for line in lines) == 1


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        out = cli("serve", "--sandbox", "--processes", "2", "--port", str(port),
                  "--data-dir", str(tmp_path / "d"), check=False)
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr

"""Connections cost a file each: slow or silent ones are cut off, and thousands of idle ones
leave the node answering."""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import GatewayServer

TIMEOUTS = {"IMAGEGATE_HEADER_TIMEOUT": "1", "IMAGEGATE_BODY_TIMEOUT": "1.5",
            "IMAGEGATE_KEEP_ALIVE_TIMEOUT": "1"}
GEN = "/openai/images/generations"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("connections"), "--sandbox", env=TIMEOUTS)
    yield server.start()
    server.stop()


def closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (sending ``drip`` a byte every 0.2 s
    meanwhile), or None if it is still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - started < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionError:
            return time.monotonic() - started
        if sent < len(drip):
            try:
                sock.sendall(drip[sent:sent + 1])
            except (BrokenPipeError, ConnectionError):
                return time.monotonic() - started
            sent += 1
    return None


def test_a_silent_connection_is_closed(gw: GatewayServer) -> None:
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        took = closed_within(s, 6)
    assert took is not None and took < 4, took


def test_a_trickled_request_head_is_cut_off(gw: GatewayServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        took = closed_within(s, 8, drip=head)  # 40 s worth of bytes, one every 0.2 s
    assert took is not None and took < 4, took


def test_a_trickled_body_is_cut_off_with_408(gw: GatewayServer) -> None:
    token = gw.demo_token()
    head = (f"POST {GEN} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: 400\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(head)
        started = time.monotonic()
        answer = b""
        s.settimeout(0.2)
        while time.monotonic() - started < 8:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                s.sendall(b" ")
                continue
            if not chunk:
                break
            answer += chunk
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"bad_request"' in answer and b"did not arrive within 1.5s" in answer
    assert took < 5, took


def test_a_large_body_on_a_slow_link_is_not_cut_off(gw: GatewayServer) -> None:
    """600 KB over ~3 s, twice the body timeout: each 64 KB received buys a second."""
    token = gw.demo_token()
    body = json.dumps({"model": "nano-banana", "prompt": "slow link",
                       "note": "x" * 600_000}).encode()
    head = (f"POST {GEN} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n"
            ).encode()
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(head)
        started = time.monotonic()
        for i in range(0, len(body), 30_000):
            s.sendall(body[i:i + 30_000])
            time.sleep(0.15)
        took = time.monotonic() - started
        s.settimeout(30)
        answer = s.recv(65536)
    assert took > 2.5, took  # well past the 1.5 s the whole body had before
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_an_idle_kept_alive_connection_is_closed(gw: GatewayServer) -> None:
    with socket.create_connection(("127.0.0.1", gw.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        took = closed_within(s, 6)
    assert took is not None and took < 4, took


def test_thousands_of_idle_sockets_leave_health_answering(tmp_path: Path) -> None:
    """The node starts with the common soft limit of 1,024 open files and lifts it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4096:
        pytest.skip(f"the hard open-file limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this test's own sockets
    server = GatewayServer(tmp_path / "d", "--sandbox", open_files=1024,
                           env={"IMAGEGATE_HEADER_TIMEOUT": "60"})
    idle: list[socket.socket] = []
    try:
        server.start()
        for _ in range(1500):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.5)  # let the server accept them all
        for _ in range(3):
            r = httpx.get(server.url + "/healthz", timeout=5)
            assert r.status_code == 200
        token = server.demo_token()
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                       headers={"authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        for s in idle:
            s.close()
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connections_over_the_cap_get_429_and_held_ones_go_on(tmp_path: Path) -> None:
    env = {"IMAGEGATE_MAX_CLIENT_CONNECTIONS": "3", "IMAGEGATE_HEADER_TIMEOUT": "30"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        auth = {"authorization": f"Bearer {server.demo_token()}"}
        body = {"model": "nano-banana", "prompt": "x"}
        held = httpx.Client(base_url=server.url, headers=auth, timeout=30)
        assert held.get("/v1/models").status_code == 200  # connection 1, kept alive
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        time.sleep(0.3)  # accepted: three connections now
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as late:
            r = late.post(GEN, json=body)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "too_many_requests"
            assert "as many connections as it may (3)" in r.json()["error"]["message"]
            assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close"
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        with socket.create_connection(("127.0.0.1", server.port)) as silent:
            took = closed_within(silent, 6)  # refused ones wait 1 s for a head, not 30
        assert took is not None and took < 3, took
        assert held.post(GEN, json=body).status_code == 200  # held before: still served
        for s in idle:
            s.close()
        time.sleep(0.3)
        with httpx.Client(base_url=server.url, headers=auth, timeout=30) as again:
            assert again.post(GEN, json=body).status_code == 200
        metrics = held.get("/metrics").text
        assert "imagegate_connections_refused_total 1.0" in metrics  # the POST
        held.close()
    assert server.log().count("connections_refused") == 1  # one line per 10 s


def test_a_flood_past_the_open_file_limit_leaves_work_in_flight_its_files(
        tmp_path: Path) -> None:
    """Hard limit 400 files: 3/4 for clients. 600 idle connections would take every file
    (the image of a request in flight could not be written: a 500 after the upstream was
    paid); over the cap they are answered or closed, and the request gets its image."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))  # our own sockets
    server = GatewayServer(tmp_path / "d", "--sandbox", open_files_hard=400,
                           env={"IMAGEGATE_HEADER_TIMEOUT": "60", "IMAGEGATE_SANDBOX_LATENCY": "3"})
    idle: list[socket.socket] = []
    try:
        server.start()
        auth = {"authorization": f"Bearer {server.demo_token()}"}
        with httpx.Client(base_url=server.url, headers=auth, timeout=60) as client:
            assert client.get("/v1/models").status_code == 200
            outcome: list[httpx.Response] = []
            worker = threading.Thread(target=lambda: outcome.append(client.post(
                GEN, json={"model": "nano-banana", "prompt": "x"})))
            worker.start()  # in flight (3 s upstream) while the flood comes
            for _ in range(600):
                try:
                    idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
                except OSError:
                    break
            worker.join(60)
            assert outcome and outcome[0].status_code == 200, outcome[0].text if outcome else ""
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        for s in idle:
            s.close()
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

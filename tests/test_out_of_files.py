"""A gateway process out of open files answers 429 and keeps its channels: the failure is
its own, not the upstream's (a node holding thousands of requests meets it first)."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagegate.testing import Fault
from tests.support.upstreams import (
    FAST_RETRIES,
    GEN,
    Fakes,
    assert_no_leak,
    error_of,
    running_fakes,
    start_gateway,
)

pytestmark = [pytest.mark.usefixtures("backend"),
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
BODY = {"model": "gpt-image-1", "prompt": "x", "size": "1024x1024"}  # one channel


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    with running_fakes() as fakes:
        yield fakes


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_out_of_files_is_a_429_and_cools_no_channel(backend: str, fakes: Fakes,
                                                    tmp_path: Path) -> None:
    env = {**FAST_RETRIES, "IMAGEGATE_BREAKER_THRESHOLD": "1",  # one channel fault opens it
           "IMAGEGATE_BREAKER_COOLDOWN": "60", "IMAGEGATE_KEEP_ALIVE_TIMEOUT": "60"}
    gw = start_gateway(backend, fakes, tmp_path, env)
    try:
        assert gw.proc is not None
        pid = gw.proc.pid
        auth = {"authorization": f"Bearer {gw.token(credits=100)}"}
        first, second = (httpx.Client(base_url=gw.url, headers=auth, timeout=60)
                         for _ in range(2))
        for client in (first, second):  # both connections accepted, one upstream connection
            assert client.post(GEN, json=BODY).status_code == 200
        openai = fakes[0]
        openai.script(Fault(delay=2.0))  # the next call holds the pooled upstream connection
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_files(pid), hard))
        held: list[httpx.Response] = []
        holder = threading.Thread(target=lambda: held.append(first.post(GEN, json=BODY)))
        holder.start()
        deadline = time.monotonic() + 20
        while len(openai.requests) < 3 and time.monotonic() < deadline:  # it holds it now
            time.sleep(0.02)
        full = second.post(GEN, json=BODY)  # needs a new upstream connection: no file left
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        message = error_of(full, 429, "too_many_requests")
        assert "limit of open connections" in message and full.headers["retry-after"] == "1"
        assert_no_leak(full.text, *fakes)
        holder.join(30)
        assert held[0].status_code == 200, held[0].text
        # the channel took no blame: with a threshold of one it would be cooling down now
        assert second.post(GEN, json=BODY).status_code == 200
        assert "channel_cooling_down" not in gw.log()
        first.close()
        second.close()
    finally:
        gw.stop()

"""A stream's edges: an upstream silent past the sync wait, and a SIGTERM mid-stream."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagegate.testing.records import Fault
from tests.support.upstreams import NO_BREAKER, Fakes, running_fakes, start_gateway
from tests.test_streaming import GEN, balance, finished, headers

BODY = {"model": "gpt-image-2", "prompt": "edge", "stream": True, "partial_images": 2}


@pytest.fixture()
def fakes() -> Iterator[Fakes]:
    with running_fakes() as started:
        yield started


def test_nothing_before_the_sync_wait_is_a_504_and_the_task_finishes(fakes: Fakes,
                                                                     tmp_path: Path) -> None:
    env = {**NO_BREAKER, "IMAGEGATE_SYNC_WAIT": "1", "IMAGEGATE_STREAM_KEEPALIVE": "0.2"}
    gw = start_gateway("sqlite", fakes, tmp_path, env, max_retries=0)
    try:
        token = gw.token(credits=10)
        before = balance(gw, token)
        fakes[0].script(Fault(delay=2.5))  # the upstream's stream starts after the wait
        r = httpx.post(gw.url + GEN, json=BODY, headers=headers(token), timeout=30)
        assert r.status_code == 504, r.text
        error = r.json()["error"]
        assert error["code"] == "timeout" and "sent nothing in 1s" in error["message"]
        assert not r.headers["content-type"].startswith("text/event-stream")
        task_id = error["message"].split("task ", 1)[1].split(" ", 1)[0]
        record = finished(gw, token, task_id)  # as a sync request's: it carries on
        assert record["status"] == "succeeded" and record["response"]["data"][0]["url"]
        assert round(before - balance(gw, token), 3) == 0.053  # charged once
    finally:
        gw.stop()


def test_sigterm_mid_stream_lets_the_stream_finish(fakes: Fakes, tmp_path: Path) -> None:
    env = {**NO_BREAKER, "IMAGEGATE_SHUTDOWN_GRACE": "20", "IMAGEGATE_STREAM_KEEPALIVE": "0.2"}
    gw = start_gateway("sqlite", fakes, tmp_path, env, max_retries=0)
    try:
        token = gw.token(credits=10)
        openai_fake = fakes[0]
        openai_fake.hold_streams()  # each stream sends its first event, then waits
        events: list[str] = []
        with httpx.stream("POST", gw.url + GEN, json=BODY, headers=headers(token),
                          timeout=30) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            events.append(next(lines))
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)  # the node drains: this stream is in flight
            threading.Timer(0.5, openai_fake.release_streams).start()
            events += [line for line in lines if line.startswith("event: ")]
        assert events[0] == "event: image_generation.partial_image"
        assert events[-1] == "event: image_generation.completed", events
        assert gw.proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        assert "Traceback" not in gw.log()
    finally:
        fakes[0].release_streams()
        gw.stop()

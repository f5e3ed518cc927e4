"""Callback delivery against receivers that misbehave: slow, dripping, redirecting, and an
address that stopped being allowed between submission and delivery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagegate.core.tasks.callbacks import CLAIM_MARGIN
from tests.support import backend as backends
from tests.support.receiver import CallbackReceiver
from tests.support.server import GatewayServer
from tests.test_async_tasks import ALLOW_LOCAL, post, wait_callback, wait_status

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

TIMEOUT = 1.0
# retries a second apart: a receiver notices a hang-up well within that
SLOW = {**ALLOW_LOCAL, "IMAGEGATE_CALLBACK_TIMEOUT": str(TIMEOUT),
        "IMAGEGATE_CALLBACK_BASE_DELAY": "1"}


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    backends.current = backend
    server = GatewayServer(tmp_path_factory.mktemp("callbacks"), "--sandbox", env=SLOW)
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=100, name="callbacks")


@pytest.fixture()
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver(slow_seconds=3 * (TIMEOUT + CLAIM_MARGIN)) as r:
        yield r


def deliver(gw: GatewayServer, token: str, url: str) -> list[dict[str, Any]]:
    """Submit a task with this callback URL; the attempts once delivery has ended."""
    r = post(gw, token, {"model": "nano-banana", "prompt": "x", "callback_url": url})
    assert r.status_code == 200, r.text
    callback = wait_callback(gw, token, r.json()["task_id"])["callback"]
    assert isinstance(callback, dict)
    assert callback["state"] == "delivered", callback
    return callback["attempts"]  # type: ignore[no-any-return]


def assert_one_at_a_time(attempts: list[dict[str, Any]]) -> None:
    for a, b in zip(attempts, attempts[1:], strict=False):
        assert b["at"] >= a["at"] + a["duration"], attempts


def test_dripping_receiver_is_cut_off(gw: GatewayServer, token: str,
                                      receiver: CallbackReceiver) -> None:
    """Headers trickling in forever trip no per-read timeout; the whole attempt is bounded,
    ends long before the claim lapses, and is never posted twice at once."""
    receiver.plan = ["drip", "drip"]
    attempts = deliver(gw, token, receiver.url + "/hook")
    assert len(receiver.received) == len(attempts) == 3  # every request is on record
    assert [a["status"] for a in attempts] == [None, None, 200]
    assert [a["error"] for a in attempts] == ["timed out after 1s"] * 2 + [None]
    assert all(a["duration"] < TIMEOUT + CLAIM_MARGIN for a in attempts), attempts
    assert_one_at_a_time(attempts)
    assert [r.hung_up for r in receiver.received] == [True, True, False]
    assert receiver.max_in_flight == 1
    assert len(receiver.delivered()) == 1


def test_slow_receiver_times_out_and_is_retried(gw: GatewayServer, token: str,
                                                receiver: CallbackReceiver) -> None:
    receiver.plan = ["stall"]
    attempts = deliver(gw, token, receiver.url)
    assert [a["error"] for a in attempts] == ["timed out after 1s", None]
    assert [a["status"] for a in attempts] == [None, 200]
    assert attempts[0]["retry_in"] == 1
    assert attempts[1]["at"] >= attempts[0]["at"] + 1
    assert receiver.received[0].hung_up
    assert len(receiver.delivered()) == 1


def test_redirects_are_not_followed(gw: GatewayServer, token: str,
                                    receiver: CallbackReceiver) -> None:
    receiver.plan = ["302"]
    attempts = deliver(gw, token, receiver.url + "/hook")
    assert [(r.method, r.path) for r in receiver.received] == [("POST", "/hook")] * 2
    assert [a["status"] for a in attempts] == [302, 200]
    assert [a["error"] for a in attempts] == ["HTTP 302", None]
    assert attempts[0]["retry_in"] == 1


def test_delivery_rechecks_the_address_after_restart(tmp_path: Path,
                                                     receiver: CallbackReceiver) -> None:
    """Accepted while 127.0.0.0/8 was allowed; by delivery time the operator removed the
    allowlist, so every attempt is refused and the receiver never hears a thing."""
    data = tmp_path / "d"
    with GatewayServer(data, "--sandbox", env={**ALLOW_LOCAL, "IMAGEGATE_WORKERS": "0"}
                       ) as api_only:
        token = api_only.token(credits=10)
        r = post(api_only, token, {"model": "nano-banana", "prompt": "x",
                                   "callback_url": receiver.url + "/hook"})
        assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    strict = {"IMAGEGATE_CALLBACK_BASE_DELAY": "0.1", "IMAGEGATE_CALLBACK_MAX_ATTEMPTS": "2",
              "IMAGEGATE_POLL_INTERVAL": "0.2"}
    with GatewayServer(data, "--sandbox", env=strict) as server:
        assert wait_status(server, token, task_id)["status"] == "succeeded"
        callback = wait_callback(server, token, task_id)["callback"]
    assert isinstance(callback, dict) and callback["state"] == "failed"
    attempts = callback["attempts"]
    assert [a["status"] for a in attempts] == [None, None]
    for attempt in attempts:
        assert "127.0.0.1 is not allowed" in attempt["error"], attempt
    assert receiver.received == []

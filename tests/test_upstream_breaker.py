"""Retry backoff, the circuit breaker and base URLs written with their version, through a
gateway whose breaker trips after 4 failures and cools down for 2.5 s."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from imagegate.core.routing.channels import ChannelRouter
from imagegate.core.routing.registry import Registry
from imagegate.testing import Fault
from tests.support.server import GatewayServer
from tests.support.upstreams import (
    BREAKER,
    BREAKER_COOLDOWN,
    Fakes,
    error_of,
    fresh,
    post,
    running_fakes,
    start_gateway,
)

# what these check happens above the database: SQLite only (the database layer runs on
# both in test_billing, test_crash_safety, test_hardening, test_scaleout ...)
pytestmark = [pytest.mark.usefixtures("backend"),
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as started:
        yield started


@pytest.fixture(scope="module")
def gw_breaker(backend: str, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[GatewayServer]:
    """Breaker on (4 failures, 2.5 s), measurable backoff, base URLs ending in /v1(beta)."""
    server = start_gateway(backend, fakes, tmp_path_factory.mktemp(f"breaker-{backend}"),
                           BREAKER, upstream_timeout=10, max_retries=3, versioned=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_b(gw_breaker: GatewayServer) -> str:
    return gw_breaker.token(credits=10000)


@pytest.fixture()
def fake(fakes: Fakes) -> Iterator[Fakes]:
    with fresh(fakes) as clean:
        yield clean


def test_base_urls_ending_in_a_version(gw_breaker: GatewayServer, token_b: str,
                                       fake) -> None:
    openai, gemini, _ = fake
    assert post(gw_breaker, token_b, {"model": "gpt-image-2", "prompt": "v"}).status_code == 200
    assert post(gw_breaker, token_b, {"model": "nano-banana", "prompt": "v"}).status_code == 200
    assert [q.path for q in openai.requests] == ["/v1/images/generations"]
    assert [q.path for q in gemini.requests] == [
        "/v1beta/models/gemini-2.5-flash-image:generateContent"]


def test_backoff_doubles_with_jitter(gw_breaker: GatewayServer, token_b: str, fake) -> None:
    openai = fake[0]
    openai.script(*[Fault(status=500)] * 3)
    r = post(gw_breaker, token_b, {"model": "gpt-image-1", "prompt": "x"})
    assert r.status_code == 200, r.text
    times = [q.time for q in openai.requests]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 3
    # base 0.2 s: waits are drawn from [0.1, 0.2], [0.2, 0.4], [0.4, 0.8]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19 and gaps[2] >= 0.38
    assert gaps[2] > gaps[0]
    # the jitter itself, from a seeded router: inside [d/2, d], never the same twice
    router = ChannelRouter(Registry(upstreams={}, models={}), {}, backoff_base=0.2,
                           backoff_cap=30, rng=random.Random(7))
    draws = [router.backoff(k, None) for k in range(5) for _ in range(3)]
    for k in range(5):
        assert all(0.1 * 2 ** k <= d <= 0.2 * 2 ** k for d in draws[3 * k: 3 * k + 3])
    assert len(set(draws)) == len(draws)
    assert router.backoff(0, 5.0) == 5.0  # Retry-After wins over a shorter backoff


def test_breaker_fails_fast_then_lets_one_trial_through(gw_breaker: GatewayServer,
                                                        token_b: str, fake) -> None:
    gemini = fake[1]
    body = {"model": "nano-banana", "prompt": "x"}
    gemini.always(Fault(status=500))
    error_of(post(gw_breaker, token_b, body), 500, "api_error")
    opened = time.monotonic()
    assert len(gemini.requests) == 4  # 1 + 3 retries: the 4th failure opens the breaker
    r = post(gw_breaker, token_b, body)
    assert "cooling down after repeated failures" in error_of(r, 500, "api_error")
    assert 1 <= int(r.headers["retry-after"]) <= BREAKER_COOLDOWN + 1
    assert len(gemini.requests) == 4  # failed fast, nothing sent upstream
    time.sleep(max(0.0, opened + BREAKER_COOLDOWN + 0.3 - time.monotonic()))
    r = post(gw_breaker, token_b, body)  # the half-open trial, still failing
    assert "HTTP 500" in error_of(r, 500, "api_error")
    assert len(gemini.requests) == 5  # one trial call, no retries
    reopened = time.monotonic()
    r = post(gw_breaker, token_b, body)
    assert "cooling down" in error_of(r, 500, "api_error") and len(gemini.requests) == 5
    gemini.always(None)
    gemini.script(Fault(delay=3))  # the next trial succeeds, slowly
    time.sleep(max(0.0, reopened + BREAKER_COOLDOWN + 0.3 - time.monotonic()))
    results: list[httpx.Response] = []
    trial = threading.Thread(target=lambda: results.append(post(gw_breaker, token_b, body)))
    trial.start()
    gemini.wait_for_requests(6)
    r = post(gw_breaker, token_b, body)  # while the trial runs, others still fail fast
    assert "cooling down" in error_of(r, 500, "api_error") and len(gemini.requests) == 6
    trial.join(30)
    assert results[0].status_code == 200, results[0].text  # the trial closed the breaker
    assert post(gw_breaker, token_b, body).status_code == 200
    assert len(gemini.requests) == 7


def test_cooled_down_channel_recovers(gw_breaker: GatewayServer, token_b: str, fake) -> None:
    openai, _, backup = fake
    body = {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"}
    openai.always(Fault(status=500))
    assert post(gw_breaker, token_b, body).status_code == 200  # served by the backup
    opened = time.monotonic()
    assert (len(openai.requests), len(backup.requests)) == (4, 1)  # now cooling down
    assert post(gw_breaker, token_b, body).status_code == 200
    assert (len(openai.requests), len(backup.requests)) == (4, 2)  # skipped while cooling
    openai.always(None)
    time.sleep(max(0.0, opened + BREAKER_COOLDOWN + 0.3 - time.monotonic()))
    assert post(gw_breaker, token_b, body).status_code == 200
    assert (len(openai.requests), len(backup.requests)) == (5, 2)  # back on the primary
    assert post(gw_breaker, token_b, body).status_code == 200
    assert (len(openai.requests), len(backup.requests)) == (6, 2)


def test_refusals_do_not_cool_a_channel_down(gw_breaker: GatewayServer, token_b: str,
                                             fake) -> None:
    gemini = fake[1]
    gemini.script(*[Fault(safety="NO_IMAGE")] * 5)  # more than the breaker's threshold
    for _ in range(5):
        error_of(post(gw_breaker, token_b, {"model": "nano-banana", "prompt": "x"}),
                 403, "forbidden")
    assert post(gw_breaker, token_b, {"model": "nano-banana", "prompt": "x"}).status_code == 200
    assert len(gemini.requests) == 6

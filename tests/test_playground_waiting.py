"""The playground while a request is in flight, against a deliberately slow sandbox gateway
(IMAGEGATE_SANDBOX_LATENCY) with a single task worker, so a second async task really waits
in the queue: the clock, the live region, the real task states, one request at a time,
Cancel, and the polling deadline."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.support.browser import (  # noqa: F401 (browser is a fixture)
    browser,
    open_playground,
    record_status,
    snapshot,
    status_log,
)
from tests.support.server import GatewayServer

LATENCY = 2.0
SLOW = 30000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = {"IMAGEGATE_POLL_INTERVAL": "0.2", "IMAGEGATE_SANDBOX_LATENCY": str(LATENCY),
           "IMAGEGATE_WORKERS": "1"}
    s = GatewayServer(tmp_path_factory.mktemp("playground-slow"), "--sandbox", env=env).start()
    yield s
    s.stop()


@pytest.fixture()
def page(browser: Browser, server: GatewayServer, request: pytest.FixtureRequest
         ) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.clock.install()  # time flows as usual until a test fast-forwards it
    pg = open_playground(context, server)
    pg.select_option("#model", "nano-banana")
    record_status(pg)
    yield pg
    snapshot(pg, request.node.name)
    context.close()


def requests_to(page: Page, path: str) -> list[Request]:
    seen: list[Request] = []
    page.on("request", lambda r: r.url.endswith(path) and seen.append(r))
    return seen


def occupy_worker(server: GatewayServer, tasks: int = 1) -> list[str]:
    """Queue async tasks ahead of the page's, so its task is really `queued` for a while."""
    ids = []
    for _ in range(tasks):
        r = httpx.post(server.url + "/openai/images/generations", timeout=30,
                       headers={"authorization": f"Bearer {server.demo_token()}"},
                       json={"model": "nano-banana", "prompt": "ahead", "async": True})
        ids.append(r.json()["task_id"])
    return ids


def test_elapsed_time_ticks_outside_the_live_region(page: Page) -> None:
    elapsed = page.locator("#elapsed")
    assert elapsed.get_attribute("aria-hidden") == "true"
    assert page.evaluate("document.getElementById('status').contains("
                         "document.getElementById('elapsed'))") is False
    page.click("#try")
    expect(elapsed).to_have_text(re.compile(r"^\d+\.\d s$"))
    first = elapsed.inner_text()
    expect(elapsed).not_to_have_text(first)
    expect(elapsed).to_have_text(re.compile(r"^[1-9]\d*\.\d s$"), timeout=SLOW)
    expect(page.locator("#status")).to_contain_text("done in", timeout=SLOW)
    expect(elapsed).to_have_text("")
    log = status_log(page)
    assert log[0] == "waiting for the gateway…" and log[-1].startswith("done in"), log
    assert len(log) == 2, log  # the ticking seconds never reached the live region


def test_async_shows_the_real_states(page: Page, server: GatewayServer) -> None:
    occupy_worker(server)
    page.check("#async")
    page.click("#try")
    expect(page.locator("#status")).to_contain_text("succeeded in", timeout=SLOW)
    states = [m.group(1) for text in status_log(page)
              if (m := re.match(r"task [0-9a-f]{8} (\w+)", text))]
    assert states[0] == "submitted" and states[-1] == "succeeded", states
    assert states.index("queued") < states.index("running") < states.index("succeeded"), states
    expect(page.locator("#images img").first).to_be_visible()


def test_ctrl_enter_twice_sends_one_request(page: Page) -> None:
    sent = requests_to(page, "/openai/images/generations")
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#status")).to_have_text("waiting for the gateway…")
    assert page.locator("#raw").text_content() == "(waiting for the answer)"
    page.keyboard.press("Control+Enter")
    page.click("#try", force=True)  # aria-disabled: playwright would wait for it otherwise
    expect(page.locator("#status")).to_contain_text("done in", timeout=SLOW)
    expect(page.locator("#try")).to_have_attribute("aria-disabled", "false")
    assert len(sent) == 1
    assert len([t for t in status_log(page) if t.startswith("done in")]) == 1
    page.keyboard.press("Control+Enter")  # a new request once the first is done
    expect(page.locator("#raw")).to_have_text("(waiting for the answer)")
    expect(page.locator("#status")).to_contain_text("done in", timeout=SLOW)
    assert len(sent) == 2


def test_cancel_stops_polling(page: Page, server: GatewayServer) -> None:
    occupy_worker(server)
    polls = requests_to(page, "/openai/tasks")
    page.check("#async")
    page.click("#try")
    expect(page.locator("#cancel")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("queued", timeout=SLOW)
    page.click("#cancel")
    expect(page.locator("#status")).to_contain_text("cancelled after")
    expect(page.locator("#status")).to_contain_text("continues on the gateway")
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#try")).to_be_focused()
    expect(page.locator("#elapsed")).to_have_text("")
    seen = len(polls)
    page.wait_for_timeout(2500)  # more than a poll interval: any further poll would show
    assert len(polls) == seen


def test_polling_gives_up_at_the_deadline(page: Page, server: GatewayServer) -> None:
    occupy_worker(server, tasks=3)
    page.check("#async")
    page.click("#try")
    expect(page.locator("#status")).to_contain_text("queued", timeout=SLOW)
    page.clock.fast_forward("21:00")  # past the 20-minute deadline
    expect(page.locator("#status")).to_contain_text("gave up", timeout=SLOW)
    expect(page.locator("#error")).to_contain_text("timeout: task")
    expect(page.locator("#try")).to_have_attribute("aria-disabled", "false")


def test_unknown_task_is_an_error(page: Page) -> None:
    """The gateway answers {} for a task it does not know: say so, do not poll forever."""
    page.route("**/openai/tasks", lambda route: route.fulfill(
        status=200, content_type="application/json", body="{}"))
    page.check("#async")
    page.click("#try")
    expect(page.locator("#error")).to_contain_text("not_found: the gateway has no task",
                                                   timeout=SLOW)
    expect(page.locator("#status")).to_contain_text("not found")


def test_unexpected_state_is_an_error(page: Page) -> None:
    page.route("**/openai/tasks", lambda route: route.fulfill(
        status=200, content_type="application/json", body='{"id": "x", "status": "paused"}'))
    page.check("#async")
    page.click("#try")
    expect(page.locator("#error")).to_contain_text('unexpected_status', timeout=SLOW)
    expect(page.locator("#error")).to_contain_text('"paused"')


def test_partial_images_show_as_they_arrive(page: Page, server: GatewayServer) -> None:
    page.select_option("#model", "gpt-image-2")
    page.check("#stream")
    page.fill("#partial_images", "2")
    expect(page.locator("#async")).not_to_be_checked()
    partial = page.locator("#images figure.partial")
    page.click("#try")
    # the sandbox spreads its latency over the partial images: the first shows while the
    # image is still being made
    expect(partial.locator("figcaption")).to_contain_text("partial image", timeout=SLOW)
    assert "done in" not in page.locator("#status").inner_text()
    assert partial.locator("img").evaluate("img => img.complete && img.naturalWidth") > 0
    snapshot(page, "streaming-partial")
    expect(page.locator("#status")).to_contain_text("2 partial images", timeout=SLOW)
    expect(partial).to_have_count(0)
    final = page.locator("#images figure img")
    expect(final).to_have_count(1)
    assert final.get_attribute("src").startswith(server.url + "/files/")
    log = status_log(page)
    assert any(line.startswith("partial image 1 at") for line in log), log
    assert any(line.startswith("partial image 2 at") for line in log), log
    assert log[-1].startswith("done in"), log
    raw = page.locator("#raw").text_content() or ""  # in a closed <details>
    assert "image_generation.partial_image" in raw and "KB of base64" in raw


def test_streaming_is_off_for_dall_e_3_and_with_async(page: Page) -> None:
    page.select_option("#model", "dall-e-3")
    expect(page.locator("#stream")).to_be_disabled()
    page.select_option("#model", "gpt-image-2")
    page.check("#stream")
    page.check("#async")
    expect(page.locator("#stream")).not_to_be_checked()

"""The playground page in real headless Chromium against a sandbox gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ROOT, GatewayServer

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is missing: .ci/run installs Debian's chromium package")
    pytest.skip("Debian's chromium is not installed here", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = {"IMAGEGATE_POLL_INTERVAL": "0.2"}
    s = GatewayServer(tmp_path_factory.mktemp("playground"), "--sandbox", env=env).start()
    yield s
    s.stop()


@pytest.fixture()
def page(browser: Browser, server: GatewayServer) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.goto(server.url + "/playground")
    pg.fill("#token", server.demo_token())
    pg.dispatch_event("#token", "change")
    expect(pg.locator("#model option")).to_have_count(6)
    yield pg
    context.close()


def enabled(page: Page) -> dict[str, bool]:
    return {name: page.is_enabled(f"#{name}") for name in (
        "size", "n", "quality", "style", "background", "output_format", "output_compression",
        "moderation", "response_format")}


def test_fields_follow_the_family(page: Page) -> None:
    page.select_option("#model", "dall-e-3")
    assert enabled(page) == {"size": True, "n": True, "quality": True, "style": True,
                             "background": False, "output_format": False,
                             "output_compression": False, "moderation": False,
                             "response_format": True}
    assert page.get_attribute("#n", "max") == "1"
    page.select_option("#model", "gpt-image-2")
    assert enabled(page)["style"] is False and enabled(page)["background"] is True
    assert "3840x2160" in page.locator("#size option").all_inner_texts()
    page.select_option("#model", "gpt-image-1")
    assert "3840x2160" not in page.locator("#size option").all_inner_texts()
    page.select_option("#model", "nano-banana-pro")
    state = enabled(page)
    assert state["quality"] is False and state["style"] is False
    assert state["output_format"] is True and state["size"] is True
    assert "0.35" in page.locator("#model option:checked").inner_text()


def test_generated_python_runs_against_the_server(page: Page, server: GatewayServer,
                                                  tmp_path: Path) -> None:
    page.select_option("#model", "nano-banana")
    page.select_option("#size", "1536x1024")
    page.check("#with-token")
    for tab in ("python", "openai"):
        page.click(f"[role=tab][data-lang={tab}]")
        source = page.locator("#code").inner_text()
        script = tmp_path / f"generated_{tab}.py"
        script.write_text(source)
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "/files/nano-banana/" in out.stdout, out.stdout
    page.click("[role=tab][data-lang=curl]")
    assert "curl -X POST" in page.locator("#code").inner_text()


def test_try_shows_the_image(page: Page) -> None:
    page.select_option("#model", "gpt-image-2")
    page.select_option("#size", "1536x1024")
    page.click("#try")
    image = page.locator("#images img").first
    expect(image).to_be_visible(timeout=30000)
    page.wait_for_function("document.querySelector('#images img').naturalWidth > 0")
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [1536, 1024]
    expect(page.locator("#images figcaption .info").first).to_have_text("1536×1024 · PNG")
    expect(page.locator("#status")).to_contain_text("done in")
    assert '"success": true' in (page.locator("#raw").text_content() or "")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground.png"), full_page=True)


def test_invalid_token_shows_the_error(browser: Browser, server: GatewayServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/playground")
    page.fill("#token", "ig-not-a-real-token-000000")
    page.dispatch_event("#token", "change")
    expect(page.locator("#model-help")).to_contain_text("invalid_token")
    page.click("#try")
    expect(page.locator("#error")).to_contain_text("invalid_token: invalid token")
    context.close()


def test_async_request_shows_its_final_state(page: Page) -> None:
    page.select_option("#model", "nano-banana")
    page.check("#async")
    page.click("#try")
    expect(page.locator("#status")).to_contain_text("task succeeded", timeout=30000)
    expect(page.locator("#images img").first).to_be_visible()
    assert '"status": "succeeded"' in (page.locator("#raw").text_content() or "")


def test_phone_width_and_keyboard(browser: Browser, server: GatewayServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(server.url + "/playground")
    page.fill("#token", server.demo_token())
    page.dispatch_event("#token", "change")
    expect(page.locator("#model option")).to_have_count(6)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.focus("#prompt")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#images img").first).to_be_visible(timeout=30000)
    page.focus("#try")
    assert page.evaluate("document.activeElement.id") == "try"
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("done in", timeout=30000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "playground-phone.png"), full_page=True)
    context.close()
